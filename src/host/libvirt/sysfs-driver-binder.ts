import { constants, lstatSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { HostError, UsageError } from '../../model/errors.js';
import type { PciAddress } from '../../model/pci-address.js';

/** How the binder writes a sysfs attribute; replaceable so tests can watch the order of writes. */
export type SysfsWrite = (path: string, text: string) => Promise<void>;

/**
 * One write(2) to an existing attribute. No O_CREAT: a missing attribute is an error, never a
 * new file; O_TRUNC is what a shell's `>` does and sysfs accepts it.
 */
export const writeAttribute: SysfsWrite = async (path, text) => {
  const file = await open(path, constants.O_WRONLY | constants.O_TRUNC);
  try {
    await file.write(text);
  } finally {
    await file.close();
  }
};

const DRIVER_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * Reads and sets a PCI device's host driver through sysfs below `sysDir` (`<root>/sys`). libvirt
 * never restores the original driver (virNodeDeviceReAttach lets the kernel choose), so when the
 * kernel picks another one the hook binds the recorded original here.
 */
export class SysfsDriverBinder {
  constructor(
    readonly sysDir: string,
    private readonly write: SysfsWrite = writeAttribute,
  ) {}

  deviceDir(address: PciAddress): string {
    return join(this.sysDir, 'bus/pci/devices', address.toString());
  }

  /**
   * The driver bound now (the `driver` link's target name), null when none. Read with direct system
   * calls (a link read never waits on a driver, unlike the writes below, which stay off the event
   * loop): a give-back polls this, and each poll was two thread-pool round trips.
   */
  async currentDriver(address: PciAddress): Promise<string | null> {
    const dir = this.deviceDir(address);
    this.requireDevice(dir);
    const link = join(dir, 'driver');
    try {
      return basename(readlinkSync(link));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw HostError.from('read driver link', link, err);
    }
  }

  /**
   * driver_override = driver, unbind from the current driver (if any and not already `driver`),
   * drivers_probe, then clear driver_override, even when a step failed, so the override never
   * outlives this call. Callers verify the result with currentDriver().
   */
  async bindDriver(address: PciAddress, driver: string): Promise<void> {
    if (!DRIVER_NAME.test(driver)) throw new UsageError(`"${driver}" is not a kernel driver name`);
    const dir = this.deviceDir(address);
    const current = await this.currentDriver(address);
    if (current === driver) return;
    const override = join(dir, 'driver_override');
    await this.writeOrFail('set driver_override', override, driver);
    let failure: unknown = null;
    try {
      if (current !== null) await this.writeOrFail('unbind', join(dir, 'driver/unbind'), address.toString());
      await this.writeOrFail('probe', join(this.sysDir, 'bus/pci/drivers_probe'), address.toString());
    } catch (err) {
      failure = err;
    }
    try {
      await this.writeOrFail('clear driver_override', override, '\n');
    } catch (err) {
      failure ??= err; // the first failure says what went wrong
    }
    if (failure !== null) throw failure;
  }

  /** Unbind from the current driver, leaving the device with none. No-op when none is bound. */
  async unbind(address: PciAddress): Promise<void> {
    if ((await this.currentDriver(address)) === null) return;
    await this.writeOrFail('unbind', join(this.deviceDir(address), 'driver/unbind'), address.toString());
  }

  private requireDevice(dir: string): void {
    try {
      lstatSync(dir);
    } catch (err) {
      throw HostError.from('find PCI device', dir, err);
    }
  }

  private async writeOrFail(operation: string, path: string, text: string): Promise<void> {
    try {
      await this.write(path, text);
    } catch (err) {
      throw HostError.from(operation, path, err);
    }
  }
}
