import { InvariantError, LibvirtError } from '../../model/errors.js';
import { OperationTimeout, withTimeout } from '../../model/timeout.js';
import { VIR_DOMAIN_DEFINE_VALIDATE, VIR_DOMAIN_XML_INACTIVE, VIR_DOMAIN_XML_SECURE } from './constants.js';
import { libvirtCall } from './libvirt-error.js';
import { loadLibvirtBinding } from './loader.js';
import type { NativeBinding, NativeConnection, NativeDomain, NativeNodeDevice } from './native.js';

/**
 * How long opening a connection may take. libvirtd answers in milliseconds, even busy; one that
 * accepts and never answers (wedged) must not hold a command, or a VM start, forever.
 */
export const OPEN_TIMEOUT_MS = 30_000;

export interface LibvirtOpenOptions {
  readOnly?: boolean;
  /** Default OPEN_TIMEOUT_MS. */
  timeoutMs?: number;
  /** The addon to use; loaded lazily from native/build when absent. */
  binding?: () => NativeBinding;
}

export interface NodeDeviceEntry {
  name: string;
  parent: string | null;
  capabilities: readonly string[];
}

/**
 * The part of a connection hook mode may use: node devices only. Looking up or listing domains
 * while a hook runs hangs libvirt, so hook-mode code is given this type, not LibvirtConnection.
 */
export interface NodeDeviceConnection {
  readonly uri: string;
  readonly readOnly: boolean;
  listNodeDevices(flags?: number): Promise<NodeDeviceEntry[]>;
  nodeDevice(name: string): Promise<LibvirtNodeDevice>;
  close(): Promise<void>;
}

/** Connections opened and not yet closed, and opens under way, for closeOpenConnections. */
const open = new Set<LibvirtConnection>();
const opening = new Set<Promise<unknown>>();

/**
 * Closes every connection this process still has open, those still opening once they are (a
 * connection begun early, never used), waiting at most `timeoutMs` in all (the program calls it on
 * its way out, after its answer): libvirtd logs "End of file while reading data" for a client that
 * leaves without closing. A close that libvirtd does not answer is left to the exit.
 */
export async function closeOpenConnections(timeoutMs = 1_000): Promise<void> {
  // No timer when there is nothing to close: the startup snapshot's warm-up runs end here, and a
  // timer made and cleared then left the resident workers' later timers of the same length (their
  // quiet second) never firing.
  if (open.size === 0 && opening.size === 0) return;
  const closing = (async () => {
    await Promise.allSettled([...opening]);
    await Promise.allSettled([...open].map((c) => c.close()));
  })();
  await withTimeout(closing, timeoutMs, 'close libvirt connections').catch(() => {});
}

/** A libvirt connection (virConnectPtr). Every call returns a Promise; failures are LibvirtError. */
export class LibvirtConnection implements NodeDeviceConnection {
  private constructor(
    readonly uri: string,
    readonly readOnly: boolean,
    private readonly native: NativeConnection,
  ) {}

  static async open(uri: string, options: LibvirtOpenOptions = {}): Promise<LibvirtConnection> {
    const binding = (options.binding ?? loadLibvirtBinding)();
    const readOnly = options.readOnly ?? false;
    const operation = `connect to ${uri}${readOnly ? ' (read-only)' : ''}`;
    const timeoutMs = options.timeoutMs ?? OPEN_TIMEOUT_MS;
    const attempt = libvirtCall(operation, () =>
      withTimeout(binding.open(uri, readOnly), timeoutMs, operation),
    );
    opening.add(attempt);
    try {
      const native = await attempt.finally(() => opening.delete(attempt));
      const connection = new LibvirtConnection(uri, readOnly, native);
      open.add(connection);
      return connection;
    } catch (err) {
      if (!(err instanceof OperationTimeout)) throw err;
      // The open goes on in its worker thread; the program leaves without waiting for it (exitProcess).
      throw new LibvirtError(
        `${operation}: libvirtd did not answer within ${timeoutMs / 1000} s; is it stuck? (systemctl status libvirtd)`,
        -1,
        -1,
        operation,
      );
    }
  }

  /** Opens `uri`, runs `fn`, and closes the connection whatever `fn` does. */
  static async withConnection<T>(
    uri: string,
    fn: (connection: LibvirtConnection) => Promise<T>,
    options: LibvirtOpenOptions = {},
  ): Promise<T> {
    const connection = await LibvirtConnection.open(uri, options);
    try {
      return await fn(connection);
    } finally {
      await connection.close();
    }
  }

  get closed(): boolean {
    return this.native.closed;
  }

  /** Idempotent. The devices and domains it handed out are let go (later calls on them throw). */
  async close(): Promise<void> {
    if (this.native.closed) return;
    // The connection closes for real only once no device or domain holds it; otherwise libvirtd
    // logs "End of file while reading data" when the process leaves.
    for (const handle of this.handles.splice(0)) handle.free();
    open.delete(this);
    await libvirtCall(`close connection to ${this.uri}`, () => this.native.close());
  }

  /** virConnectListAllNodeDevices; `flags` filters by capability (VIR_CONNECT_LIST_NODE_DEVICES_CAP_*). */
  async listNodeDevices(flags = 0): Promise<NodeDeviceEntry[]> {
    const n = this.open();
    return libvirtCall(`list node devices on ${this.uri}`, () => n.listAllNodeDevices(flags));
  }

  async nodeDevice(name: string): Promise<LibvirtNodeDevice> {
    const n = this.open();
    const dev = await libvirtCall(`look up node device ${name} on ${this.uri}`, () =>
      n.nodeDeviceLookupByName(name),
    );
    return this.held(new LibvirtNodeDevice(dev, this.uri));
  }

  /** CLI only: in hook mode any call about the hooked domain hangs libvirt. */
  async domain(name: string): Promise<LibvirtDomain> {
    const n = this.open();
    const dom = await libvirtCall(`look up domain ${name} on ${this.uri}`, () => n.domainLookupByName(name));
    return this.held(new LibvirtDomain(dom, this.uri));
  }

  /** virDomainDefineXML: creates or replaces the persistent definition. CLI only. */
  async defineDomain(xml: string): Promise<LibvirtDomain> {
    const n = this.open();
    // With validation: libvirt refuses what it would not start, in its own words, before the old
    // definition is replaced.
    const dom = await libvirtCall(`define a domain on ${this.uri}`, () =>
      n.domainDefineXMLFlags(xml, VIR_DOMAIN_DEFINE_VALIDATE),
    );
    return this.held(new LibvirtDomain(dom, this.uri));
  }

  /** Devices and domains looked up through this connection, let go at close(). */
  private readonly handles: { free(): void }[] = [];

  private held<H extends { free(): void }>(handle: H): H {
    this.handles.push(handle);
    return handle;
  }

  private open(): NativeConnection {
    if (this.native.closed) throw new InvariantError(`libvirt connection to ${this.uri} used after close`);
    return this.native;
  }
}

export class LibvirtNodeDevice {
  /** Read once: it names the device in errors, after free() too. */
  readonly name: string;

  constructor(
    private readonly native: NativeNodeDevice,
    private readonly uri: string,
  ) {
    this.name = native.name;
  }

  xml(): Promise<string> {
    return libvirtCall(`read XML of node device ${this.name} on ${this.uri}`, () => this.native.xmlDesc(0));
  }

  /** virNodeDeviceDetachFlags: "vfio" hands the device to vfio-pci. */
  detach(driver = 'vfio'): Promise<void> {
    return libvirtCall(`detach node device ${this.name} to ${driver} on ${this.uri}`, () =>
      this.native.detachFlags(driver),
    );
  }

  /** virNodeDeviceReAttach: back to the host; the kernel picks the driver. */
  reattach(): Promise<void> {
    return libvirtCall(`reattach node device ${this.name} on ${this.uri}`, () => this.native.reAttach());
  }

  /**
   * Lets go of the device now rather than at garbage collection: its connection closes for real
   * (libvirtd logs an "End of file" error for one that does not) only once no device holds it.
   */
  free(): void {
    this.native.free();
  }
}

export interface DomainXmlOptions {
  /** The persistent definition rather than the live one. */
  inactive?: boolean;
  /** Include security-sensitive parts (passwords); needed to define the XML back. libvirt refuses it on a read-only connection. */
  secure?: boolean;
}

export class LibvirtDomain {
  /** Read once: it names the domain in errors, after free() too. */
  readonly name: string;

  constructor(
    private readonly native: NativeDomain,
    private readonly uri: string,
  ) {
    this.name = native.name;
  }

  /** Lets go of the domain now (its connection's close() does it for every one it handed out). */
  free(): void {
    this.native.free();
  }

  xml(options: DomainXmlOptions = {}): Promise<string> {
    const flags =
      (options.inactive ? VIR_DOMAIN_XML_INACTIVE : 0) | (options.secure ? VIR_DOMAIN_XML_SECURE : 0);
    return libvirtCall(`read XML of domain ${this.name} on ${this.uri}`, () => this.native.xmlDesc(flags));
  }

  create(): Promise<void> {
    return libvirtCall(`start domain ${this.name} on ${this.uri}`, () => this.native.create());
  }

  isActive(): Promise<boolean> {
    return libvirtCall(`check whether domain ${this.name} runs on ${this.uri}`, () => this.native.isActive());
  }
}
