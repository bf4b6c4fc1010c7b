import type { HandoverRecord, StateFile, StateRecord } from './schema.js';

// Pure helpers over a StateFile value: each returns a new value and leaves its input alone.

export function recordsFor(state: StateFile, domain: string): readonly StateRecord[] {
  return state.records.filter((r) => r.domain === domain);
}

export function recordFor(state: StateFile, address: string): StateRecord | null {
  return state.records.find((r) => r.address === address) ?? null;
}

/**
 * Records left by an earlier boot: their devices are back with the host after the reboot.
 * A record or a current boot id that is unknown (null) never makes a record stale.
 */
export function staleRecords(state: StateFile, currentBootId: string | null): readonly StateRecord[] {
  if (!currentBootId) return [];
  return state.records.filter((r) => r.bootId !== null && r.bootId !== currentBootId);
}

/** Adds the record, or replaces the one with the same address (one record per device). */
export function upsertRecord(state: StateFile, record: StateRecord): StateFile {
  const i = state.records.findIndex((r) => r.address === record.address);
  const records = i < 0 ? [...state.records, record] : state.records.map((r, j) => (j === i ? record : r));
  return { ...state, records };
}

export function removeRecord(state: StateFile, address: string): StateFile {
  return { ...state, records: state.records.filter((r) => r.address !== address) };
}

/** Drops every record of an earlier boot (see staleRecords). */
export function withoutStale(state: StateFile, currentBootId: string | null): StateFile {
  const stale = new Set(staleRecords(state, currentBootId));
  return stale.size === 0 ? state : { ...state, records: state.records.filter((r) => !stale.has(r)) };
}

// --- hand-over records ---------------------------------------------------------------------------

export function handoversFor(state: StateFile, domain: string): readonly HandoverRecord[] {
  return (state.handovers ?? []).filter((h) => h.domain === domain);
}

/** Whether a hand-over of `domain` is recorded: its GPU was taken from the desktop on purpose. */
export function hasHandover(state: StateFile, domain: string): boolean {
  return handoversFor(state, domain).length > 0;
}

/** Adds the record, or replaces the one of the same domain and step. */
export function upsertHandover(state: StateFile, record: HandoverRecord): StateFile {
  const list = state.handovers ?? [];
  const i = list.findIndex((h) => h.domain === record.domain && h.step === record.step);
  const handovers = i < 0 ? [...list, record] : list.map((h, j) => (j === i ? record : h));
  return { ...state, handovers };
}

export function removeHandover(state: StateFile, domain: string, step: number): StateFile {
  const handovers = (state.handovers ?? []).filter((h) => !(h.domain === domain && h.step === step));
  return withHandovers(state, handovers);
}

/** Hand-over records of an earlier boot: the reboot brought the desktop back by itself. */
export function staleHandovers(state: StateFile, currentBootId: string | null): readonly HandoverRecord[] {
  if (!currentBootId) return [];
  return (state.handovers ?? []).filter((h) => h.bootId !== null && h.bootId !== currentBootId);
}

/** The state without `handovers` when none is left, so files without hand-overs stay as they were. */
export function withHandovers(state: StateFile, handovers: readonly HandoverRecord[]): StateFile {
  const { handovers: _old, ...rest } = state;
  return handovers.length > 0 ? { ...rest, handovers } : rest;
}
