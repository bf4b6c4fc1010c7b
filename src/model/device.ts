import type { HexId, PciClassCode } from './ids.js';
import type { PciAddress } from './pci-address.js';

/** One PCI function as the host sees it (read from sysfs). */
export interface PciDevice {
  readonly kind: 'pci';
  readonly address: PciAddress;
  readonly vendor: HexId;
  readonly device: HexId;
  readonly subsystemVendor: HexId | null;
  readonly subsystemDevice: HexId | null;
  readonly classCode: PciClassCode;
  /** Bound driver name, null when none. */
  readonly driver: string | null;
  /** driver_override, read only when the device has no driver or is on vfio-pci; null otherwise. */
  readonly driverOverride: string | null;
  readonly iommuGroup: number | null;
  readonly bootVga: boolean;
  /** Names from pci.ids, null when unknown or pci.ids is absent. */
  readonly vendorName: string | null;
  readonly deviceName: string | null;
  /** Network interfaces this function provides (sysfs net/). */
  readonly netdevs: readonly string[];
  /** Set on an SR-IOV physical function. */
  readonly sriov: {
    readonly totalVfs: number;
    readonly numVfs: number;
    readonly vfs: readonly PciAddress[];
  } | null;
  /** Set on an SR-IOV virtual function: its PF and index. */
  readonly physfn: { readonly address: PciAddress; readonly index: number } | null;
}

/** One USB device (not interface) as the host sees it. */
export interface UsbDevice {
  readonly kind: 'usb';
  /** sysfs name, e.g. "3-2.1": bus 3, port path 2.1. */
  readonly port: string;
  readonly vendor: HexId;
  readonly product: HexId;
  readonly serial: string | null;
  readonly busnum: number;
  readonly devnum: number;
  readonly manufacturer: string | null;
  readonly productName: string | null;
  /** The PCI function of the host controller it hangs off; null when not behind PCI. */
  readonly controller: PciAddress | null;
}

/** Why a PCI device must never leave the host, unless the entry says `force: true` (bootVga only). */
export interface ProtectedDevice {
  readonly address: PciAddress;
  readonly reason: 'root-disk' | 'mounted-disk' | 'default-route' | 'boot-vga';
  readonly detail: string;
}

/** Everything the planner needs to know about the host, read once. */
export interface Inventory {
  readonly pci: readonly PciDevice[];
  readonly usb: readonly UsbDevice[];
  readonly protectedDevices: readonly ProtectedDevice[];
  readonly bootId: string | null;
  /** Non-fatal problems met while reading (an unreadable attribute, a device gone mid-read). */
  readonly warnings: readonly string[];
  /** What the host can do for passthrough; absent when not read (then nothing is assumed missing). */
  readonly support?: HostSupport;
}

/** Host facts that decide whether passthrough can work at all, and where device names come from. */
export interface HostSupport {
  /** False when the kernel runs without an active IOMMU: /sys/kernel/iommu_groups is empty or absent. */
  readonly iommu: boolean;
  /** From /proc/cpuinfo's vendor_id: decides which kernel parameter turns the IOMMU on. */
  readonly cpuVendor: 'intel' | 'amd' | null;
  /** /proc/cmdline, null when unreadable. */
  readonly cmdline: string | null;
  /** The pci.ids file device names come from; null when there is none. */
  readonly pciIds: string | null;
  /** Where pci.ids was looked for (for the message when it is missing). */
  readonly pciIdsSearched: readonly string[];
}

/** "NVIDIA Corporation GA102 [GeForce RTX 3090]", or the ids when pci.ids has no name. */
export function deviceName(d: PciDevice): string {
  return [d.vendorName, d.deviceName].filter(Boolean).join(' ') || `[${d.vendor}:${d.device}]`;
}

export function deviceLabel(d: PciDevice): string {
  const name = [d.vendorName, d.deviceName].filter(Boolean).join(' ');
  return name ? `${d.address} (${name})` : `${d.address} [${d.vendor}:${d.device}]`;
}

export function isVfio(driver: string | null): boolean {
  return driver === 'vfio-pci';
}
