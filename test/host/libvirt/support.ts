import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { libvirtBindingBuilt } from '../../../src/host/libvirt/loader.js';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const fixtureHostXml = join(repoRoot, 'fixtures/libvirt/test-host.xml');
/** libvirt's test driver over our fixture: every connection gets its own copy of it. */
export const fixtureUri = `test://${fixtureHostXml}`;

export const addonBuilt = libvirtBindingBuilt();
if (!addonBuilt) {
  console.warn(
    'note: libvirt binding not built (native/build/Release/qemu_hook_libvirt.node); ' +
      'skipping the tests that call libvirt. Install libvirt-dev and re-run npm ci to run them.',
  );
}

export interface FakePciDevice {
  address: string;
  driver?: string;
}

/**
 * A sysfs tree shaped like the kernel's, under `<root>/sys`: bus/pci/devices/<addr> links into
 * devices/pci0000:00/, `driver` links to bus/pci/drivers/<name>, and the attribute files the
 * binder writes (driver_override, drivers_probe, each driver's unbind) exist, empty.
 */
export async function makeSysTree(
  root: string,
  devices: FakePciDevice[],
  drivers: string[],
): Promise<string> {
  const sys = join(root, 'sys');
  const pci = join(sys, 'bus/pci');
  await mkdir(join(pci, 'devices'), { recursive: true });
  await writeFile(join(pci, 'drivers_probe'), '');
  for (const name of drivers) {
    await mkdir(join(pci, 'drivers', name), { recursive: true });
    await writeFile(join(pci, 'drivers', name, 'unbind'), '');
    await writeFile(join(pci, 'drivers', name, 'bind'), '');
  }
  for (const dev of devices) {
    const real = join(sys, 'devices/pci0000:00', dev.address);
    await mkdir(real, { recursive: true });
    await writeFile(join(real, 'driver_override'), '(null)\n');
    await symlink(relative(join(pci, 'devices'), real), join(pci, 'devices', dev.address));
    if (dev.driver) await symlink(relative(real, join(pci, 'drivers', dev.driver)), join(real, 'driver'));
  }
  return sys;
}

export function devicePath(sys: string, address: string, ...rest: string[]): string {
  return join(sys, 'bus/pci/devices', address, ...rest);
}
