// Inside the lab guest only: how long libvirt's node-device calls take from one process with the
// project's addon (what the hook's give-back and detach are made of), so the perf line can say how
// much of the hook's stop is libvirt's connection and how much the reattach itself.
// usage: node libvirt-timing.mjs <checkout> <nodedev name> <rounds>
// Prints one JSON object: { open, lookup, detach, reattach } in ms, each a list (one per round).
// Leaves the device where libvirt's reattach puts it (the kernel's pick): the caller checks it.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

// It detaches a real device of the kernel it runs on: only the lab guest's (run-lab.mjs boots it
// with lab.stage= on its kernel command line), never the machine running the tests.
if (!/(^| )lab\.stage=/.test(readFileSync('/proc/cmdline', 'utf8'))) {
  console.error(
    'libvirt-timing.mjs: runs only inside the lab guest (no lab.stage= on /proc/cmdline); nothing done',
  );
  process.exit(2);
}
const [checkout, name, rounds = '3'] = process.argv.slice(2);
if (!checkout || !name) {
  console.error('usage: node libvirt-timing.mjs <checkout> <nodedev name> [rounds]');
  process.exit(2);
}
const addon = createRequire(import.meta.url)(join(checkout, 'native/build/Release/qemu_hook_libvirt.node'));
const out = { open: [], lookup: [], detach: [], reattach: [], close: [] };
const timed = async (key, f) => {
  const t0 = performance.now();
  const r = await f();
  out[key].push(Math.round(performance.now() - t0));
  return r;
};
for (let i = 0; i < Number(rounds); i++) {
  const conn = await timed('open', () => addon.open('qemu:///system', false));
  const dev = await timed('lookup', () => conn.nodeDeviceLookupByName(name));
  await timed('detach', () => dev.detachFlags('vfio'));
  await timed('reattach', () => dev.reAttach());
  await timed('close', () => conn.close());
}
console.log(JSON.stringify(out));
