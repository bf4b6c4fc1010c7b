import { describe, expect, it } from 'vitest';
import {
  emptyState,
  recordFor,
  recordsFor,
  removeRecord,
  type StateFile,
  type StateRecord,
  staleRecords,
  upsertRecord,
  withoutStale,
} from '../../src/state/index.js';

function rec(address: string, domain: string, bootId: string | null = 'boot-a'): StateRecord {
  return {
    domain,
    address,
    originalDriver: 'nvidia',
    bootId,
    phase: 'detached',
    since: '2024-05-01T10:00:00.000Z',
    entry: 'gpu',
  };
}

function frozen(records: StateRecord[]): StateFile {
  return Object.freeze({ version: 1, records: Object.freeze(records.map((r) => Object.freeze(r))) });
}

describe('state record helpers', () => {
  const state = frozen([
    rec('0000:01:00.0', 'win11'),
    rec('0000:01:00.1', 'win11'),
    rec('0000:02:00.0', 'linux', 'boot-old'),
    rec('0000:03:00.0', 'linux', null),
  ]);

  it('recordsFor selects one domain', () => {
    expect(recordsFor(state, 'win11').map((r) => r.address)).toEqual(['0000:01:00.0', '0000:01:00.1']);
    expect(recordsFor(state, 'nobody')).toEqual([]);
  });

  it('recordFor finds a device by address', () => {
    expect(recordFor(state, '0000:02:00.0')?.domain).toBe('linux');
    expect(recordFor(state, '0000:09:00.0')).toBeNull();
  });

  it('staleRecords are those of another boot; unknown boot ids are never stale', () => {
    expect(staleRecords(state, 'boot-a').map((r) => r.address)).toEqual(['0000:02:00.0']);
    expect(staleRecords(state, 'boot-old').map((r) => r.address)).toEqual(['0000:01:00.0', '0000:01:00.1']);
    expect(staleRecords(state, null)).toEqual([]);
    expect(withoutStale(state, 'boot-a').records.map((r) => r.address)).toEqual([
      '0000:01:00.0',
      '0000:01:00.1',
      '0000:03:00.0',
    ]);
  });

  it('upsertRecord adds a new device and replaces an existing one in place', () => {
    const added = upsertRecord(state, rec('0000:04:00.0', 'win11'));
    expect(added.records).toHaveLength(5);
    expect(added.records[4]?.address).toBe('0000:04:00.0');

    const replaced = upsertRecord(state, { ...rec('0000:01:00.1', 'win11'), phase: 'detaching' });
    expect(replaced.records).toHaveLength(4);
    expect(replaced.records[1]).toMatchObject({ address: '0000:01:00.1', phase: 'detaching' });
    expect(state.records[1]?.phase).toBe('detached');
  });

  it('removeRecord drops one device and leaves the input alone', () => {
    const after = removeRecord(state, '0000:01:00.0');
    expect(after.records.map((r) => r.address)).toEqual(['0000:01:00.1', '0000:02:00.0', '0000:03:00.0']);
    expect(state.records).toHaveLength(4);
    expect(removeRecord(emptyState(), '0000:01:00.0').records).toEqual([]);
  });
});
