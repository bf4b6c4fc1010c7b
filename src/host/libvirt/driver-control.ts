import type { PciAddress } from '../../model/pci-address.js';
import type { DriverControl } from '../../model/ports.js';
import { LibvirtConnection, type LibvirtOpenOptions, type NodeDeviceConnection } from './connection.js';
import { LazyConnection } from './lazy-connection.js';
import { SysfsDriverBinder } from './sysfs-driver-binder.js';

export type NodeDeviceConnectionFactory = () => Promise<NodeDeviceConnection>;

/**
 * DriverControl for hook mode: detach/reattach through libvirt's node-device API, reading and
 * binding host drivers through sysfs. It only ever sees a NodeDeviceConnection, which cannot look
 * up or list domains (that hangs libvirt while a hook runs). The connection is opened on first
 * use and shared by later calls; close() it when done.
 */
export class LibvirtDriverControl implements DriverControl {
  private readonly binder: SysfsDriverBinder;
  private readonly connection: LazyConnection<NodeDeviceConnection>;

  /** `connect`: a libvirt URI (e.g. qemu:///system), or a function that opens the connection. */
  constructor(
    connect: string | NodeDeviceConnectionFactory,
    sysDir: string,
    options: LibvirtOpenOptions = {},
  ) {
    this.connection = new LazyConnection(
      typeof connect === 'string' ? () => LibvirtConnection.open(connect, options) : connect,
    );
    this.binder = new SysfsDriverBinder(sysDir);
  }

  static forUri(uri: string, sysDir: string, options: LibvirtOpenOptions = {}): LibvirtDriverControl {
    return new LibvirtDriverControl(uri, sysDir, options);
  }

  warmUp(): void {
    this.connection.get().catch(() => {}); // a failed open is not kept: the first call opens again
  }

  async detach(address: PciAddress): Promise<void> {
    const device = await (await this.open()).nodeDevice(address.nodedevName);
    try {
      await device.detach('vfio');
    } finally {
      device.free(); // close() then closes the connection for real
    }
  }

  async reattach(address: PciAddress): Promise<void> {
    const device = await (await this.open()).nodeDevice(address.nodedevName);
    try {
      await device.reattach();
    } finally {
      device.free();
    }
  }

  bindDriver(address: PciAddress, driver: string): Promise<void> {
    return this.binder.bindDriver(address, driver);
  }

  unbind(address: PciAddress): Promise<void> {
    return this.binder.unbind(address);
  }

  currentDriver(address: PciAddress): Promise<string | null> {
    return this.binder.currentDriver(address);
  }

  /** Closes the connection if one was opened. Idempotent. */
  close(): Promise<void> {
    return this.connection.close();
  }

  private open(): Promise<NodeDeviceConnection> {
    return this.connection.get();
  }
}
