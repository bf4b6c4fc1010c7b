import type { PciDevice, UsbDevice } from '../model/device.js';

/** How one config entry resolved against the host. */
export type Resolution<T> =
  | {
      readonly ok: true;
      /** The matched devices, in address order; for PCI entries with `functions: all`, the slot's other functions follow. */
      readonly devices: readonly T[];
      /** 0-based index of the criteria set that won. */
      readonly tier: number;
      /** The winning set as written, e.g. `{ vendor: "10de", device: "2204" }`. */
      readonly criteria: string;
    }
  | {
      readonly ok: false;
      readonly reason: string;
      /** Set when a criteria set matched more devices than it should: what it matched. */
      readonly candidates?: readonly string[];
    };

export type PciResolution = Resolution<PciDevice>;
export type UsbResolution = Resolution<UsbDevice>;

export function tierLabel(tier: number, total: number, criteria: string): string {
  return total > 1 ? `set ${tier + 1} of ${total} ${criteria}` : criteria;
}
