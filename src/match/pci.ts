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
