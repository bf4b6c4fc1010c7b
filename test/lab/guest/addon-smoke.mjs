// Infrastructure step (c), inside the guest: the project's native addon, built on the host against
// the host's libvirt, loads here and talks to the guest's libvirtd. Read-only: it lists devices.
// usage: node addon-smoke.mjs <checkout>; writes "ADDON OK …" to /run/addon-smoke.out on success.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const checkout = process.argv[2] ?? '/lab/qemu-hook';
const t0 = performance.now();
const addon = createRequire(import.meta.url)(join(checkout, 'native/build/Release/qemu_hook_libvirt.node'));
const loaded = performance.now();
const conn = await addon.open('qemu:///system', true);
const devices = await conn.listAllNodeDevices(addon.constants.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV);
const names = devices.map((d) => d.name);
await conn.close();
const line = `ADDON OK libvirt ${addon.libvirtVersion}, load ${(loaded - t0).toFixed(0)} ms, open+list ${(performance.now() - loaded).toFixed(0)} ms, ${names.length} PCI node devices (${names.includes('pci_0000_01_00_0') ? 'e1000e seen' : 'no e1000e!'})`;
console.log(line);
if (names.includes('pci_0000_01_00_0')) writeFileSync('/run/addon-smoke.out', `${line}\n`);
