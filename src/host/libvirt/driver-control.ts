import type { PciAddress } from '../../model/pci-address.js';
import type { DriverControl } from '../../model/ports.js';
import { LibvirtConnection, type LibvirtOpenOptions, type NodeDeviceConnection } from './connection.js';
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
  private connection: Promise<NodeDeviceConnection> | null = null;
  private readonly connect: NodeDeviceConnectionFactory;

  /** `connect`: a libvirt URI (e.g. qemu:///system), or a function that opens the connection. */
  constructor(
    connect: string | NodeDeviceConnectionFactory,
    sysDir: string,
    options: LibvirtOpenOptions = {},
  ) {
    this.connect = typeof connect === 'string' ? () => LibvirtConnection.open(connect, options) : connect;
    this.binder = new SysfsDriverBinder(sysDir);
  }

  static forUri(uri: string, sysDir: string, options: LibvirtOpenOptions = {}): LibvirtDriverControl {
    return new LibvirtDriverControl(uri, sysDir, options);
  }

  async detach(address: PciAddress): Promise<void> {
    const device = await (await this.open()).nodeDevice(address.nodedevName);
    await device.detach('vfio');
  }

  async reattach(address: PciAddress): Promise<void> {
    const device = await (await this.open()).nodeDevice(address.nodedevName);
    await device.reattach();
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
  async close(): Promise<void> {
    const pending = this.connection;
    this.connection = null;
    if (!pending) return;
    const connection = await pending.catch(() => null); // a failed open has nothing to close
    await connection?.close();
  }

  private open(): Promise<NodeDeviceConnection> {
    if (!this.connection) {
      const opening = this.connect();
      this.connection = opening;
      // A failed open is not cached: the next call tries again.
      opening.catch(() => {
        if (this.connection === opening) this.connection = null;
      });
    }
    return this.connection;
  }
}
