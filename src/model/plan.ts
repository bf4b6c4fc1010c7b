/** What the hook would do (or did) for one event. The JSON shape of `--simulate --json`. */
/** `refuse`: the start is refused because of this device (its `reason` says why); nothing is taken. */
export type DeviceAction = 'detach' | 'reattach' | 'none' | 'refuse';

export interface PlannedDevice {
  /** The config entry name; further functions/members are `<name>-<N>`, group siblings `<name>:group`. */
  readonly name: string;
  readonly type: 'pci' | 'usb' | 'sriov';
  readonly address: string | null;
  /** The driver bound now (PCI), null when none. */
  readonly driver: string | null;
  readonly action: DeviceAction;
  readonly iommuGroup: number | null;
  /** For release: the driver recorded before detach. */
  readonly originalDriver?: string | null;
  /** For USB: the ids (and port) the definition names. */
  readonly usb?: {
    readonly vendor: string;
    readonly product: string;
    readonly port: string;
    readonly serial: string | null;
  };
  /** Which match tier won (0-based) and what it said. */
  readonly matchedBy?: string;
  /** Why the device is in the plan besides its own entry ("function of gpu", "IOMMU group 13 of gpu"), or why it is refused. */
  readonly reason?: string;
  /** For an entry that matches more devices than it should: the addresses (or USB ports) it matches. */
  readonly candidates?: readonly string[];
}

export interface DefinitionChange {
  readonly changed: boolean;
  /** Unified diff of the persistent definition, "" when unchanged. */
  readonly diff: string;
  /** What the change does, one line each ("adopted gpu: pci 0000:01:00.0 (keeps your alias 'ua-myGPU'); managed='yes' → 'no' …"). */
  readonly actions?: readonly string[];
  /** The definition as it should be; absent when unchanged or unknown. */
  readonly xml?: string;
  /** Where the current definition came from ("libvirt", a file path, "stdin"). */
  readonly source?: string;
  /** The definition points at devices that moved, or lacks configured ones: a start must be refused. */
  readonly stale?: boolean;
  /** No definition of the domain was found: it cannot start at all. */
  readonly missing?: boolean;
}

export interface Plan {
  readonly domain: string;
  readonly event: 'prepare' | 'release';
  /** False whenever the hook would refuse the start. */
  readonly ok: boolean;
  readonly devices: readonly PlannedDevice[];
  readonly definition: DefinitionChange;
  /** Plain-words reasons the hook would refuse. */
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}
