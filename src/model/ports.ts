import type { Inventory } from './device.js';
import type { PciAddress } from './pci-address.js';

// Interfaces through which plan/ and hook/ reach the host. host/ implements them; cli/ wires them.

/** Reads the host's devices (sysfs under a root). */
export interface InventoryReader {
  read(): Promise<Inventory>;
  /**
   * The inventory of these PCI functions only, for the events that act on devices already known
   * (release, recover): their devices (absent ones left out), the protected devices, the boot id;
   * no USB devices and no pci.ids names. What a host with hundreds of functions costs a full read,
   * this does not.
   */
  readFor(addresses: readonly PciAddress[]): Promise<Inventory>;
}

/**
 * Moves PCI devices between host drivers and vfio-pci. This is the only port hook mode gets
 * for libvirt: it has no way to look up or list domains, which would hang libvirt while a hook runs.
 */
export interface DriverControl {
  /** Hand the device to vfio-pci (virNodeDeviceDetachFlags(dev, "vfio")). No-op if already there. */
  detach(address: PciAddress): Promise<void>;
  /** Give the device back to the host (virNodeDeviceReAttach): the kernel picks the driver. */
  reattach(address: PciAddress): Promise<void>;
  /** Bind a named driver: driver_override = driver, unbind, drivers_probe, clear driver_override. */
  bindDriver(address: PciAddress, driver: string): Promise<void>;
  /** Unbind from whatever driver holds the device, leaving it with none (its original state). */
  unbind(address: PciAddress): Promise<void>;
  /** The driver bound now, null when none. */
  currentDriver(address: PciAddress): Promise<string | null>;
}

/** The persistent definition of a domain, for CLI commands only (never in hook mode). */
export interface DefinitionSource {
  /** null when the domain is not defined. `source` says where the XML came from. */
  persistentXml(domain: string): Promise<{ xml: string; source: string } | null>;
}

/** Writes persistent definitions (libvirt defineXML, or a file under --root). CLI only. */
export interface DefinitionStore extends DefinitionSource {
  isActive(domain: string): Promise<boolean>;
  define(domain: string, xml: string): Promise<void>;
}

/**
 * What the executor checks on the host before it records or gives back a device: a state record
 * is a claim, and the host decides (a forged or outdated record must not unbind the root disk).
 */
export interface HostSafety {
  /** The vendor and device ids at `address` now ("10de", "2204"); null when nothing is there. */
  ids(address: PciAddress): Promise<{ vendor: string; device: string } | null>;
  /** Why the device must stay with the host now (a disk in use, the default route, the console), or null. */
  protection(address: PciAddress): Promise<string | null>;
}

export interface Clock {
  now(): Date;
}
