import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { executePrepare, executeRelease } from '../../src/hook/execute.js';
import { silentLogger } from '../../src/hook/logger.js';
import { installFaults } from '../../src/model/faults.js';
import type { Plan, PlannedDevice } from '../../src/model/plan.js';
import { loadState, saveState } from '../../src/state/file.js';
import type { StateRecord } from '../../src/state/schema.js';
import { FakeDriverControl } from '../support/fake-driver.js';

let dir: string;
let stateFile: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qh-exec-'));
  stateFile = join(dir, 'state.json');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const dev = (
  name: string,
  address: string,
  driver: string | null,
  action: PlannedDevice['action'] = 'detach',
): PlannedDevice => ({
  name,
  type: 'pci',
  address,
  driver,
  action,
  iommuGroup: 13,
  originalDriver: driver === 'vfio-pci' ? null : driver,
});

const plan = (devices: PlannedDevice[], domain = 'win11'): Plan => ({
  domain,
  event: 'prepare',
  ok: true,
  devices,
  definition: { changed: false, diff: '' },
  errors: [],
  warnings: [],
});

const deps = (control: FakeDriverControl, extra: object = {}) => ({
  control,
  stateFile,
  bootId: 'boot-1',
  clock: { now: () => new Date('2026-11-25T12:00:00Z') },
  log: silentLogger,
  timeoutMs: 2_000,
  lock: { timeoutMs: 2_000 },
  ...extra,
});

const GPU = [
  dev('gpu', '0000:01:00.0', 'nvidia'),
  dev('gpu-1', '0000:01:00.1', 'snd_hda_intel'),
  dev('gpu-2', '0000:01:00.2', null),
];

describe('executePrepare', () => {
  it('records each original driver before detaching, then marks it detached', async () => {
    const control = FakeDriverControl.of({
      '0000:01:00.0': 'nvidia',
      '0000:01:00.1': 'snd_hda_intel',
      '0000:01:00.2': null,
    });
    const out = await executePrepare(plan(GPU), deps(control));
    expect(out).toEqual({ ok: true, errors: [], detached: ['0000:01:00.0', '0000:01:00.1', '0000:01:00.2'] });
    const state = await loadState(stateFile);
    expect(state.records.map((r) => [r.address, r.originalDriver, r.phase, r.domain, r.bootId])).toEqual([
      ['0000:01:00.0', 'nvidia', 'detached', 'win11', 'boot-1'],
      ['0000:01:00.1', 'snd_hda_intel', 'detached', 'win11', 'boot-1'],
      ['0000:01:00.2', null, 'detached', 'win11', 'boot-1'],
    ]);
    expect([...control.drivers.values()]).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci']);
  });

  it('the record is on disk before the detach starts (write-ahead)', async () => {
    const control = FakeDriverControl.of({ '0000:01:00.0': 'nvidia' });
    const seen: (StateRecord | undefined)[] = [];
    const original = control.detach.bind(control);
    control.detach = async (a) => {
      seen.push((await loadState(stateFile)).records.find((r) => r.address === a.toString()));
      return original(a);
    };
    await executePrepare(plan([GPU[0]!]), deps(control));
    expect(seen[0]).toMatchObject({ phase: 'detaching', originalDriver: 'nvidia' });
  });

  it('saves the state twice whatever the number of devices: every record ahead of the first detach, then all detached', async () => {
    const control = FakeDriverControl.of({
      '0000:01:00.0': 'nvidia',
      '0000:01:00.1': 'snd_hda_intel',
      '0000:01:00.2': null,
    });
    const phasesAtDetach: string[][] = [];
    const original = control.detach.bind(control);
    control.detach = async (a) => {
      phasesAtDetach.push((await loadState(stateFile)).records.map((r) => `${r.address} ${r.phase}`));
      return original(a);
    };
    const points: string[] = [];
    installFaults((p) => void points.push(p));
    try {
      await executePrepare(plan(GPU), deps(control));
    } finally {
      installFaults(null);
    }
    expect(points.filter((p) => p === 'state-saved')).toHaveLength(2);
    const ahead = ['0000:01:00.0 detaching', '0000:01:00.1 detaching', '0000:01:00.2 detaching'];
    expect(phasesAtDetach).toEqual([ahead, ahead, ahead]);
    expect(points.filter((p) => p !== 'lock-create' && !p.startsWith('state-'))).toEqual([
      'lock',
      'record',
      'detach',
      'detach',
      'detach',
    ]);
  });

  for (const nth of [1, 2, 3]) {
    it(`a detach failing at device ${nth} gives back what this run took and leaves the state as before`, async () => {
      const before = { '0000:01:00.0': 'nvidia', '0000:01:00.1': 'snd_hda_intel', '0000:01:00.2': null };
      // The kernel would pick another driver for the audio function: rollback must still restore snd_hda_intel.
      const control = FakeDriverControl.of(before, { '0000:01:00.1': 'snd_sof' }, { op: 'detach', nth });
      const out = await executePrepare(plan(GPU), deps(control));
      expect(out.ok).toBe(false);
      expect(out.errors[0]).toContain('injected detach failure');
      expect(Object.fromEntries(control.drivers)).toEqual(before);
      expect((await loadState(stateFile)).records).toEqual([]);
      expect(await readdir(dir)).toEqual(['state.json']);
    });
  }

  it('refuses, touching nothing, when another domain holds a device (checked again under the lock)', async () => {
    const control = FakeDriverControl.of({ '0000:01:00.0': 'vfio-pci' });
    const other: StateRecord = {
      domain: 'linux',
      address: '0000:01:00.0',
      originalDriver: 'nvidia',
      bootId: 'boot-1',
      phase: 'detached',
      since: '2026-11-25T10:00:00.000Z',
      entry: 'gpu',
    };
    await saveState(stateFile, { version: 1, records: [other] });
    const out = await executePrepare(plan([dev('gpu', '0000:01:00.0', 'nvidia')]), deps(control));
    expect(out.errors).toEqual(['gpu: 0000:01:00.0 is held by domain linux; stop linux first']);
    expect(control.calls).toEqual([]);
    expect((await loadState(stateFile)).records).toEqual([other]);
  });

  it('keeps the original driver of an earlier record of the same domain instead of writing vfio-pci', async () => {
    const control = FakeDriverControl.of({ '0000:01:00.0': 'vfio-pci' });
    await saveState(stateFile, {
      version: 1,
      records: [
        {
          domain: 'win11',
          address: '0000:01:00.0',
          originalDriver: 'nvidia',
          bootId: 'boot-1',
          phase: 'detaching',
          since: '2026-11-25T10:00:00.000Z',
          entry: 'gpu',
        },
      ],
    });
    await executePrepare(
      plan([{ ...dev('gpu', '0000:01:00.0', 'vfio-pci'), action: 'detach' }]),
      deps(control),
    );
    expect((await loadState(stateFile)).records[0]).toMatchObject({
      originalDriver: 'nvidia',
      phase: 'detached',
    });
  });

  it('waits for vfio-pci to show after the detach, however the probe runs', async () => {
    const control = FakeDriverControl.of({ '0000:01:00.0': 'nvidia' });
    control.probeLag = 2;
    const out = await executePrepare(plan([GPU[0]!]), deps(control));
    expect(out).toEqual({ ok: true, errors: [], detached: ['0000:01:00.0'] });
  });

  it('a hung detach times out, is rolled back and refuses the start', async () => {
    const control = FakeDriverControl.of(
      { '0000:01:00.0': 'nvidia' },
      { '0000:01:00.0': 'nvidia' },
      { op: 'detach', nth: 1, hang: true },
    );
    const out = await executePrepare(plan([GPU[0]!]), deps(control, { timeoutMs: 50 }));
    expect(out.ok).toBe(false);
    expect(out.errors[0]).toMatch(/did not finish within/);
  });
});

describe('executeRelease', () => {
  const held = (address: string, originalDriver: string | null, domain = 'win11'): StateRecord => ({
    domain,
    address,
    originalDriver,
    bootId: 'boot-1',
    phase: 'detached',
    since: '2026-11-25T10:00:00.000Z',
    entry: 'gpu',
  });

  it('reattaches, and binds the recorded driver when the kernel picks another; removes verified records only', async () => {
    await saveState(stateFile, {
      version: 1,
      records: [
        held('0000:01:00.0', 'nvidia'),
        held('0000:01:00.1', 'snd_hda_intel'),
        held('0000:03:02.0', 'iavf', 'other'),
      ],
    });
    const control = FakeDriverControl.of(
      { '0000:01:00.0': 'vfio-pci', '0000:01:00.1': 'vfio-pci', '0000:03:02.0': 'vfio-pci' },
      { '0000:01:00.0': 'nouveau', '0000:01:00.1': 'snd_hda_intel' },
    );
    const out = await executeRelease((r) => r.domain === 'win11', deps(control));
    expect(out.failed).toEqual([]);
    expect(control.drivers.get('0000:01:00.0')).toBe('nvidia');
    expect(control.drivers.get('0000:01:00.1')).toBe('snd_hda_intel');
    expect(control.calls).toEqual([
      'reattach 0000:01:00.0',
      'bind nvidia 0000:01:00.0',
      'reattach 0000:01:00.1',
    ]);
    expect((await loadState(stateFile)).records.map((r) => r.address)).toEqual(['0000:03:02.0']);
  });

  it('drops the records of every device given back in one save', async () => {
    await saveState(stateFile, {
      version: 1,
      records: [held('0000:01:00.0', 'nvidia'), held('0000:01:00.1', 'snd_hda_intel')],
    });
    const control = FakeDriverControl.of(
      { '0000:01:00.0': 'vfio-pci', '0000:01:00.1': 'vfio-pci' },
      { '0000:01:00.0': 'nvidia', '0000:01:00.1': 'snd_hda_intel' },
    );
    const points: string[] = [];
    installFaults((p) => void points.push(p));
    try {
      await executeRelease((r) => r.domain === 'win11', deps(control));
    } finally {
      installFaults(null);
    }
    expect(points.filter((p) => p === 'state-saved')).toHaveLength(1);
    expect((await loadState(stateFile)).records).toEqual([]);
  });

  it('leaves a device that had no driver with none, even when the kernel binds one', async () => {
    await saveState(stateFile, { version: 1, records: [held('0000:00:05.0', null)] });
    const control = FakeDriverControl.of(
      { '0000:00:05.0': 'vfio-pci' },
      { '0000:00:05.0': 'uio_pci_generic' },
    );
    await executeRelease(() => true, deps(control));
    expect(control.drivers.get('0000:00:05.0')).toBeNull();
    expect((await loadState(stateFile)).records).toEqual([]);
  });

  it('keeps the record of a device that could not be given back, for recover', async () => {
    await saveState(stateFile, { version: 1, records: [held('0000:01:00.0', 'nvidia')] });
    const control = FakeDriverControl.of({ '0000:01:00.0': 'vfio-pci' }, {}, { op: 'reattach', nth: 1 });
    const out = await executeRelease(() => true, deps(control));
    expect(out.failed).toEqual([
      { address: '0000:01:00.0', error: expect.stringContaining('injected reattach failure') },
    ]);
    expect((await loadState(stateFile)).records).toHaveLength(1);
  });

  it('writes the state file once, when every device is back, not once per device', async () => {
    await saveState(stateFile, {
      version: 1,
      records: [
        held('0000:01:00.0', 'nvidia'),
        held('0000:01:00.1', 'snd_hda_intel'),
        held('0000:01:00.2', null),
      ],
    });
    const control = FakeDriverControl.of({
      '0000:01:00.0': 'vfio-pci',
      '0000:01:00.1': 'vfio-pci',
      '0000:01:00.2': 'vfio-pci',
    });
    // What the state file says while each device is being given back.
    const seen: number[] = [];
    const reattach = control.reattach.bind(control);
    control.reattach = async (a) => {
      seen.push((await loadState(stateFile)).records.length);
      return reattach(a);
    };
    const out = await executeRelease(() => true, deps(control));
    expect(out.failed).toHaveLength(0);
    expect(seen).toEqual([3, 3, 3]);
    expect((await loadState(stateFile)).records).toEqual([]);
  });

  it('waits for a driver that binds asynchronously, rather than taking it for a failed give-back', async () => {
    await saveState(stateFile, { version: 1, records: [held('0000:01:00.0', 'nvidia')] });
    const control = FakeDriverControl.of({ '0000:01:00.0': 'vfio-pci' }, { '0000:01:00.0': 'nvidia' });
    control.probeLag = 3;
    const out = await executeRelease(() => true, deps(control));
    expect(out).toEqual({ restored: [{ address: '0000:01:00.0', driver: 'nvidia' }], failed: [] });
    expect((await loadState(stateFile)).records).toEqual([]);
  });

  it('gives up on a driver that never shows, once the settle time is over, and keeps the record', async () => {
    await saveState(stateFile, { version: 1, records: [held('0000:01:00.0', 'nvidia')] });
    const control = FakeDriverControl.of({ '0000:01:00.0': 'vfio-pci' }, { '0000:01:00.0': 'nouveau' });
    control.probeLag = Number.POSITIVE_INFINITY;
    const out = await executeRelease(() => true, deps(control, { settleMs: 30 }));
    expect(out.failed).toEqual([
      { address: '0000:01:00.0', error: '0000:01:00.0 is on no driver, not nvidia' },
    ]);
    expect((await loadState(stateFile)).records).toHaveLength(1);
  });

  it('is a no-op without records, and drops records of an earlier boot', async () => {
    const control = FakeDriverControl.of({});
    expect(await executeRelease(() => true, deps(control))).toEqual({ restored: [], failed: [] });
    await saveState(stateFile, {
      version: 1,
      records: [{ ...held('0000:01:00.0', 'nvidia'), bootId: 'boot-0' }],
    });
    await executeRelease(() => true, deps(control));
    expect(control.calls).toEqual([]);
    expect((await loadState(stateFile)).records).toEqual([]);
    expect(JSON.parse(await readFile(stateFile, 'utf8')).records).toEqual([]);
  });
});
