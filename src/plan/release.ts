import type { Inventory } from '../model/device.js';
import type { Plan } from '../model/plan.js';
import type { StateRecord } from '../state/schema.js';
import { currentRecords, staleWarning } from './held.js';

/** Plans a `release`: every device this domain detached in this boot, back to its original driver. */
export function planRelease(domain: string, inventory: Inventory, records: readonly StateRecord[]): Plan {
  const { current, stale } = currentRecords(records, inventory.bootId);
  const mine = current.filter((r) => r.domain === domain);
  return {
    domain,
    event: 'release',
    ok: true,
    devices: mine.map((r) => {
      const d = inventory.pci.find((p) => p.address.toString() === r.address);
      return {
        name: r.entry,
        type: 'pci' as const,
        address: r.address,
        driver: d?.driver ?? null,
        action: 'reattach' as const,
        iommuGroup: d?.iommuGroup ?? null,
        originalDriver: r.originalDriver,
        ...(r.phase === 'detaching'
          ? { reason: 'the detach may not have finished (crash during prepare)' }
          : {}),
      };
    }),
    definition: { changed: false, diff: '' },
    errors: [],
    warnings: stale.filter((r) => r.domain === domain).map(staleWarning),
  };
}
