import type { PciEntry } from '../config/model.js';
import { deviceLabel, type Inventory, type PciDevice } from '../model/device.js';
import { pciCriteriaHold } from './criteria.js';
import type { PciResolution } from './resolution.js';
import { resolveTiers } from './tiers.js';

export function resolvePci(entry: PciEntry, inventory: Inventory): PciResolution {
  const r = resolveTiers({
    entry: entry.name,
    tiers: entry.tiers,
    count: entry.count,
    candidates: inventory.pci,
    holds: pciCriteriaHold,
    describe: (d) => d.address.toString(),
    differences: pciDifferences,
    nothingFound: 'run `qemu-hook devices` to see what the host has',
    unusable: (c) => (c.name !== undefined && !hasPciNames(inventory) ? NO_NAMES : null),
    // With `functions: all` the entry names a slot: "0000:01:00.*", or ids the GPU and its audio
    // share, match one slot, not two devices.
    ...(entry.functions === 'all' ? { fold: firstOfEachSlot } : {}),
  });
  if (!r.ok || entry.functions === 'one') return r;
  // `functions: all`: the other functions of each matched slot follow their slot's match.
  const devices: PciDevice[] = [];
  for (const d of r.devices) {
    devices.push(d);
    for (const f of inventory.pci) {
      if (f.address.slotKey === d.address.slotKey && !f.address.equals(d.address) && !r.devices.includes(f))
        devices.push(f);
    }
  }
  return { ...r, devices };
}

const NO_NAMES =
  'name: needs device names, and this host has no pci.ids (install pciutils or hwdata, which bring /usr/share/misc/pci.ids or /usr/share/hwdata/pci.ids), or match by vendor/device instead';

/** Whether names were read from a pci.ids file; an inventory that does not say is taken to have them. */
function hasPciNames(inventory: Inventory): boolean {
  return inventory.support === undefined || inventory.support.pciIds !== null;
}

function firstOfEachSlot(found: readonly PciDevice[]): PciDevice[] {
  const seen = new Set<string>();
  return found.filter((d) => {
    if (seen.has(d.address.slotKey)) return false;
    seen.add(d.address.slotKey);
    return true;
  });
}

/** How ambiguous candidates differ, phrased as the criteria that would tell them apart. */
function pciDifferences(ds: readonly PciDevice[]): string {
  const differ = (f: (d: PciDevice) => unknown) => new Set(ds.map((d) => String(f(d)))).size > 1;
  const hints: string[] = [];
  if (differ((d) => `${d.subsystemVendor}:${d.subsystemDevice}`))
    hints.push('subsystemVendor/subsystemDevice');
  if (differ((d) => d.driver)) hints.push('driver');
  hints.push('address');
  return `tell them apart with ${hints.join(' or ')} (see ${ds.map(deviceLabel).join('; ')})`;
}
