import { join } from 'node:path';
import type { Inventory } from '../../model/device.js';
import type { HostPaths } from '../../model/paths.js';
import type { InventoryReader } from '../../model/ports.js';
import { NO_PCI_NAMES, PciIds, type PciNames } from '../pci-ids.js';
import { readHostSupport } from './host-support.js';
import { readPciDevices } from './pci-devices.js';
import { protectedDevices } from './protected-devices.js';
import { errnoCode, readSmall, Warnings } from './sysfs-files.js';
import { readUsbDevices } from './usb-devices.js';

export interface SysfsInventoryOptions {
  /**
   * Where device names come from. Default: the first of `paths.pciIdsCandidates` that exists
   * (names stay null without one); pass `null` for ids only.
   */
  readonly names?: PciNames | null;
}

/**
 * Reads the host's devices from sysfs and procfs below `paths.root`. Never throws for a problem
 * with one device or file: it goes to `warnings` and the rest of the inventory stays usable.
 */
export class SysfsInventoryReader implements InventoryReader {
  constructor(
    private readonly paths: HostPaths,
    private readonly options: SysfsInventoryOptions = {},
  ) {}

  async read(): Promise<Inventory> {
    return this.readSync();
  }

  readSync(): Inventory {
    const { sys, proc } = this.paths;
    const warnings = new Warnings();
    const names = this.names();
    const pci = readPciDevices(sys, names, warnings);
    const usb = readUsbDevices(sys, warnings);
    const protectedList = protectedDevices(sys, proc, pci, warnings);
    return {
      pci,
      usb,
      protectedDevices: protectedList,
      bootId: bootId(proc, warnings),
      warnings: warnings.list,
      support: readHostSupport(sys, proc, names.source, this.paths.pciIdsCandidates),
    };
  }

  async bootId(): Promise<string | null> {
    return bootId(this.paths.proc, new Warnings());
  }

  private names(): PciNames {
    if (this.options.names !== undefined) return this.options.names ?? NO_PCI_NAMES;
    return PciIds.load(this.paths.pciIdsCandidates);
  }
}

function bootId(proc: string, warnings: Warnings): string | null {
  const path = join(proc, 'sys/kernel/random/boot_id');
  try {
    return readSmall(path).trim() || null;
  } catch (err) {
    warnings.add(`cannot read the boot id: ${path} (${errnoCode(err)})`);
    return null;
  }
}
