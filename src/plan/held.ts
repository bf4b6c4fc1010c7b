import type { StateRecord } from '../state/schema.js';

/** The records that speak for this boot; the others describe a host that has since rebooted. */
export function currentRecords(
  records: readonly StateRecord[],
  bootId: string | null,
): { current: StateRecord[]; stale: StateRecord[] } {
  const current: StateRecord[] = [];
  const stale: StateRecord[] = [];
  for (const r of records) (bootId && r.bootId && r.bootId !== bootId ? stale : current).push(r);
  return { current, stale };
}

export function staleWarning(r: StateRecord): string {
  return `state record for ${r.address} (domain ${r.domain}) is from an earlier boot: the host rebooted since, so it is ignored`;
}
