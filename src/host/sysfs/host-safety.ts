import { join } from 'node:path';
import type { ProtectedDevice } from '../../model/device.js';
import type { PciAddress } from '../../model/pci-address.js';
import type { HostSafety } from '../../model/ports.js';
import { hostUseProtections } from './protected-devices.js';
import { errnoCode, linkName, readSmall, Warnings } from './sysfs-files.js';

/**
 * HostSafety from sysfs and procfs, one device at a time: the disks and routes the host uses are
 * read once (mounts, swaps, block chains, routes: not the whole PCI tree), then each recorded
 * address is looked up in them, and its own attributes read.
 */
export class SysfsHostSafety implements HostSafety {
  private uses: readonly ProtectedDevice[] | null = null;

  constructor(
    private readonly sys: string,
    private readonly proc: string,
  ) {}

  async ids(address: PciAddress): Promise<{ vendor: string; device: string } | null> {
    const dir = this.deviceDir(address);
    try {
      return { vendor: hex(readSmall(join(dir, 'vendor'))), device: hex(readSmall(join(dir, 'device'))) };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw err;
    }
  }

  async protection(address: PciAddress): Promise<string | null> {
    const dir = this.deviceDir(address);
    const driver = linkName(join(dir, 'driver'));
    // On vfio-pci, with no VFs of its own, nothing of the host goes through the function: no disk,
    // no interface, no console hangs below it (vfio-pci takes no bridge), so none of the host's uses
    // can name it, and giving it back only adds a driver. A PF on vfio-pci may carry VFs the host
    // uses (the default route's VF): those are looked up like any other device.
    if (driver === 'vfio-pci' && !hasVirtualFunctions(dir)) return null;
    this.uses ??= hostUseProtections(this.sys, this.proc, new Warnings());
    const why = this.uses.filter((p) => p.address.equals(address)).map((p) => p.detail);
    if (driver && driver !== 'vfio-pci' && bootVga(dir))
      why.push(`boot VGA device driving the console (driver ${driver})`);
    return why.length > 0 ? `it is the ${why.join('; ')}` : null;
  }

  private deviceDir(address: PciAddress): string {
    return join(this.sys, 'bus/pci/devices', address.toString());
  }
}

/** VFs enabled on the function (sriov_numvfs above 0); an unreadable count counts as some. */
function hasVirtualFunctions(dir: string): boolean {
  try {
    return readSmall(join(dir, 'sriov_numvfs')).trim() !== '0';
  } catch (err) {
    return errnoCode(err) !== 'ENOENT';
  }
}

function bootVga(dir: string): boolean {
  try {
    return readSmall(join(dir, 'boot_vga')) === '1';
  } catch {
    return false;
  }
}

/** "0x10DE" → "10de". */
function hex(raw: string): string {
  return raw.trim().toLowerCase().replace(/^0x/, '').padStart(4, '0');
}
