// The shape of native/build/Release/qemu_hook_libvirt.node (native/src/*.cc). Every method that
// may block runs on a worker thread and returns a Promise; a libvirt failure rejects with a
// NativeLibvirtFailure.

export interface NativeBinding {
  open(uri: string, readOnly: boolean): Promise<NativeConnection>;
  /** _exit(2): leaves without joining worker threads a libvirt call may still hold. */
  exitNow?(code: number): never;
  /** Numbers from the libvirt headers the addon was built against. */
  readonly constants: Readonly<Record<string, number>>;
  /** libvirt library version, major * 1_000_000 + minor * 1_000 + micro. */
  readonly libvirtVersion: number;
}

export interface NativeConnection {
  readonly closed: boolean;
  close(): Promise<void>;
  listAllNodeDevices(flags: number): Promise<NativeNodeDeviceEntry[]>;
  nodeDeviceLookupByName(name: string): Promise<NativeNodeDevice>;
  domainLookupByName(name: string): Promise<NativeDomain>;
  domainDefineXML(xml: string): Promise<NativeDomain>;
  /** virDomainDefineXMLFlags; VIR_DOMAIN_DEFINE_VALIDATE checks the XML against libvirt's schema first. */
  domainDefineXMLFlags(xml: string, flags: number): Promise<NativeDomain>;
}

export interface NativeNodeDeviceEntry {
  name: string;
  parent: string | null;
  /** virNodeDeviceListCaps: "pci", "usb_device", "net", … */
  capabilities: string[];
}

export interface NativeNodeDevice {
  readonly name: string;
  xmlDesc(flags?: number): Promise<string>;
  /** virNodeDeviceDetachFlags(dev, driverName, 0); null lets libvirt choose. */
  detachFlags(driverName: string | null): Promise<void>;
  reAttach(): Promise<void>;
  /** Drops the device's reference to its connection now (local); later calls throw. */
  free(): void;
}

export interface NativeDomain {
  readonly name: string;
  xmlDesc(flags: number): Promise<string>;
  create(): Promise<void>;
  isActive(): Promise<boolean>;
  /** Drops the domain's reference to its connection now (local); later calls throw. */
  free(): void;
}

/** What a rejected call carries: libvirt's virError fields and the C function that failed. */
export interface NativeLibvirtFailure extends Error {
  code: number;
  domain: number;
  level: number;
  function: string;
}
