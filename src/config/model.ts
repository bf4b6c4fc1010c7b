import type { HexId, PciClassPrefix } from '../model/ids.js';
import type { PciAddressPattern } from '../model/pci-address.js';

// The config after validation: every id parsed, every regex compiled. This is what the rest reads.

export interface PciCriteria {
  readonly address?: PciAddressPattern;
  readonly vendor?: HexId;
  readonly device?: HexId;
  readonly subsystemVendor?: HexId;
  readonly subsystemDevice?: HexId;
  readonly class?: PciClassPrefix;
  readonly name?: RegExp;
  readonly driver?: string;
  /** The set as the user wrote it, for messages. */
  readonly text: string;
}

export interface UsbCriteria {
  readonly vendor?: HexId;
  readonly product?: HexId;
  readonly serial?: string;
  readonly port?: string;
  readonly name?: RegExp;
  readonly text: string;
}

export interface SriovCriteria {
  readonly pf: string;
  readonly vf?: number;
  readonly text: string;
}

interface EntryBase {
  readonly name: string;
  readonly count: number;
  readonly force: boolean;
}

export interface PciEntry extends EntryBase {
  readonly type: 'pci';
  readonly tiers: readonly PciCriteria[];
  readonly functions: 'all' | 'one';
}

export interface UsbEntry extends EntryBase {
  readonly type: 'usb';
  readonly tiers: readonly UsbCriteria[];
}

export interface SriovEntry extends EntryBase {
  readonly type: 'sriov';
  readonly tiers: readonly SriovCriteria[];
  readonly mac?: string;
  readonly vlan?: number;
}

export type DeviceEntry = PciEntry | UsbEntry | SriovEntry;

export type IommuGroupPolicy = 'require' | 'detach' | 'ignore';
export type AddressChangePolicy = 'refuse' | 'redefine' | 'restart';

/** `handover:` of a domain: the single-GPU hand-over, on. */
export interface HandoverConfig {
  /** Unit names with their suffix ("nvidia-persistenced.service"). */
  readonly services: readonly string[];
  readonly modules: readonly string[];
  readonly timeoutMs: number;
  readonly holders: 'refuse' | 'term' | 'kill';
}

export interface DomainConfig {
  readonly name: string;
  readonly devices: readonly DeviceEntry[];
  readonly iommuGroup: IommuGroupPolicy;
  readonly onAddressChange: AddressChangePolicy;
  /** null: no hand-over (the console's GPU is refused). */
  readonly handover: HandoverConfig | null;
}

export interface Config {
  /**
   * The domains whose entry is valid: the shared ones, with those of the `hosts:` sections that
   * match this host in their place.
   */
  readonly domains: ReadonlyMap<string, DomainConfig>;
  /** Domains whose own entry has problems (each with its path): only their starts are refused. */
  readonly invalidDomains: ReadonlyMap<string, readonly string[]>;
  /** The hostname the config was read for (null: unknown, only the shared domains apply). */
  readonly host: string | null;
  /** The `hosts:` keys that matched `host`, in the order they were applied. */
  readonly hostSections: readonly string[];
  readonly libvirtUri: string;
  readonly stateFile: string;
  readonly log: { readonly level: string; readonly file: string };
  /** Time limits, in seconds: each per-VM script, and one whole hook run. */
  readonly limits: { readonly scriptSeconds: number; readonly hookSeconds: number };
}

export interface ConfigResult {
  /** null when there are problems outside any domain (`errors`); a domain's own are in `config.invalidDomains`. */
  readonly config: Config | null;
  readonly warnings: readonly string[];
  readonly errors: readonly string[];
  /** The domains the file names, even when it is invalid; null when it is not even YAML. */
  readonly domainNames?: readonly string[] | null;
}
