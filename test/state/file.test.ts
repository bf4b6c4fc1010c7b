import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostError, InvariantError } from '../../src/model/errors.js';
import {
  emptyState,
  loadState,
  StateCorruptError,
  type StateFile,
  type StateRecord,
  StateVersionError,
  saveState,
  upsertRecord,
} from '../../src/state/index.js';

const record: StateRecord = {
  domain: 'win11',
  address: '0000:01:00.0',
  originalDriver: 'nvidia',
  bootId: '0d6b2c3e-5c1a-4c47-9c3e-7f1f6a0e2a11',
  phase: 'detached',
  since: '2024-05-01T10:00:00.000Z',
  entry: 'gpu',
};
const oneRecord: StateFile = upsertRecord(emptyState(), record);

/** A pid that certainly belonged to a process which has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

let dir: string;
let path: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qemu-hook-state-'));
  path = join(dir, 'var/lib/qemu-hook/state.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadState', () => {
  it('returns an empty state when the file does not exist', async () => {
    expect(await loadState(path)).toEqual({ version: 1, records: [] });
  });

  it('reads back what saveState wrote', async () => {
    await saveState(path, oneRecord);
    expect(await loadState(path)).toEqual(oneRecord);
  });

  it('accepts a null original driver and a null boot id', async () => {
    const s = upsertRecord(emptyState(), { ...record, originalDriver: null, bootId: null });
    await saveState(path, s);
    expect((await loadState(path)).records[0]).toMatchObject({ originalDriver: null, bootId: null });
  });

  for (const [what, text] of [
    ['unparsable JSON', '{"version":1,"records":[{"domain":"win'],
    ['an empty file', ''],
    ['a schema violation', JSON.stringify({ version: 1, records: [{ ...record, address: '1:0.0' }] })],
    [
      'a record without its phase',
      JSON.stringify({ version: 1, records: [{ ...record, phase: undefined }] }),
    ],
    ['two records for one device', JSON.stringify({ version: 1, records: [record, record] })],
    ['a bare array', '[]'],
  ] as const) {
    it(`keeps ${what} aside as .corrupt and says so`, async () => {
      await saveState(path, emptyState());
      await writeFile(path, text);
      const err = await loadState(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateCorruptError);
      expect(err).toBeInstanceOf(HostError);
      const e = err as StateCorruptError;
      expect(e.keptAt).toBe(`${path}.corrupt`);
      expect(e.message).toContain(`${path}.corrupt`);
      expect(e.message).toContain('qemu-hook status');
      expect(e.message).toContain('qemu-hook recover');
      expect(await readFile(`${path}.corrupt`, 'utf8')).toBe(text);
      await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    });
  }

  it('read-only, leaves a corrupt file where it is and says so', async () => {
    await saveState(path, emptyState());
    await writeFile(path, '{ not json');
    const err = (await loadState(path, { readOnly: true }).catch((e: unknown) => e)) as StateCorruptError;
    expect(err).toBeInstanceOf(StateCorruptError);
    expect(err.keptAt).toBeNull();
    expect(err.message).toMatch(/left as it is \(this command changes nothing/);
    expect(await readFile(path, 'utf8')).toBe('{ not json');
    await expect(stat(`${path}.corrupt`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('never overwrites an earlier .corrupt file', async () => {
    const at = new Date('2024-05-01T10:00:00.123Z');
    await saveState(path, emptyState());
    await writeFile(path, 'first garbage');
    await expect(loadState(path)).rejects.toBeInstanceOf(StateCorruptError);
    await writeFile(path, 'second garbage');
    const err = (await loadState(path, { now: () => at }).catch((e: unknown) => e)) as StateCorruptError;
    expect(err.keptAt).toBe(`${path}.corrupt.2024-05-01T10-00-00-123Z`);
    expect(await readFile(`${path}.corrupt`, 'utf8')).toBe('first garbage');
    expect(await readFile(err.keptAt!, 'utf8')).toBe('second garbage');
  });

  it('leaves a file from a newer qemu-hook untouched', async () => {
    await saveState(path, emptyState());
    const text = JSON.stringify({ version: 2, devices: {} });
    await writeFile(path, text);
    await expect(loadState(path)).rejects.toBeInstanceOf(StateVersionError);
    expect(await readFile(path, 'utf8')).toBe(text);
    expect((await readdir(join(dir, 'var/lib/qemu-hook'))).sort()).toEqual(['state.json']);
  });
});

describe('saveState', () => {
  it('creates the folder 0755 and the file 0644 whatever the umask', async () => {
    const old = process.umask(0o077);
    try {
      await saveState(path, oneRecord);
    } finally {
      process.umask(old);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect((await stat(join(dir, 'var/lib/qemu-hook'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dir, 'var/lib'))).mode & 0o777).toBe(0o755);
  });

  it('leaves no temp file behind', async () => {
    await saveState(path, emptyState());
    await saveState(path, oneRecord);
    expect(await readdir(join(dir, 'var/lib/qemu-hook'))).toEqual(['state.json']);
  });

  it('a crash between write and rename leaves the old state readable, and a later save cleans up', async () => {
    await saveState(path, oneRecord);
    const folder = join(dir, 'var/lib/qemu-hook');
    const crashed = join(folder, `state.json.${deadPid()}.tmp`);
    const live = join(folder, `state.json.${process.ppid}.tmp`);
    await writeFile(crashed, '{"version":1,"records":[{"dom'); // half written when the process died
    await writeFile(live, '{}'); // a live process is still writing this one

    expect(await loadState(path)).toEqual(oneRecord);
    expect(await readdir(folder)).toContain('state.json');
    expect(await readdir(folder)).not.toContain('state.json.corrupt');

    await saveState(path, emptyState());
    expect(await loadState(path)).toEqual(emptyState());
    expect((await readdir(folder)).sort()).toEqual(['state.json', `state.json.${process.ppid}.tmp`].sort());
  });

  it('refuses to write an invalid state and leaves the file as it was', async () => {
    await saveState(path, oneRecord);
    const before = await readFile(path, 'utf8');
    const bad = upsertRecord(emptyState(), { ...record, address: 'not-an-address' });
    await expect(saveState(path, bad)).rejects.toBeInstanceOf(InvariantError);
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it('reports a folder it cannot create as a HostError naming the path', async () => {
    await writeFile(join(dir, 'var'), 'a file where a folder should be');
    const err = (await saveState(path, oneRecord).catch((e: unknown) => e)) as HostError;
    expect(err).toBeInstanceOf(HostError);
    expect(err.message).toContain(join(dir, 'var/lib/qemu-hook'));
  });
});
