import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HostError } from '../../src/model/errors.js';
import { loadState, StateLockError, withStateLock } from '../../src/state/index.js';
import { processStart } from '../../src/state/pid.js';

const repo = resolve(import.meta.dirname, '../..');

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

let dir: string;
let path: string;
let lockPath: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qemu-hook-lock-'));
  path = join(dir, 'state', 'state.json');
  lockPath = `${path}.lock`;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeLock(content: unknown, ageMs = 0): Promise<void> {
  await mkdir(dirname(lockPath), { recursive: true });
  await writeFile(lockPath, typeof content === 'string' ? content : JSON.stringify(content));
  if (ageMs) {
    const t = new Date(Date.now() - ageMs);
    await utimes(lockPath, t, t);
  }
}

async function lockExists(): Promise<boolean> {
  return (await readdir(dirname(lockPath))).includes('state.json.lock');
}

describe('withStateLock in one process', () => {
  it('holds a lock file naming this process while fn runs, and removes it after', async () => {
    const seen = await withStateLock(path, async () => JSON.parse(await readFile(lockPath, 'utf8')), {
      bootId: 'boot-a',
    });
    expect(seen).toMatchObject({ pid: process.pid, bootId: 'boot-a' });
    expect(await lockExists()).toBe(false);
  });

  it('releases the lock when fn throws', async () => {
    await expect(
      withStateLock(path, () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await lockExists()).toBe(false);
  });

  it('serialises two holders in the same process', async () => {
    const events: string[] = [];
    const job = (name: string) =>
      withStateLock(
        path,
        async () => {
          events.push(`${name} in`);
          await sleep(50);
          events.push(`${name} out`);
        },
        { retryMs: 5 },
      );
    await Promise.all([job('a'), job('b')]);
    expect(events[0]!.split(' ')[0]).toBe(events[1]!.split(' ')[0]);
    expect(events[2]!.split(' ')[0]).toBe(events[3]!.split(' ')[0]);
  });

  it('waits for a live holder, then fails naming its pid', async () => {
    await writeLock({
      pid: process.ppid,
      start: processStart(process.ppid),
      bootId: 'boot-a',
      since: '2024-05-01T10:00:00Z',
      token: 'x',
    });
    let ran = false;
    const err = await withStateLock(
      path,
      () => {
        ran = true;
      },
      { bootId: 'boot-a', timeoutMs: 200, retryMs: 10 },
    ).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(StateLockError);
    expect(err).toBeInstanceOf(HostError);
    expect((err as StateLockError).holderPid).toBe(process.ppid);
    expect((err as Error).message).toContain(`pid ${process.ppid}`);
    expect((err as Error).message).toContain(lockPath);
    expect(await lockExists()).toBe(true); // someone else's lock is left alone
  });

  it('does not take a lock that is being written (empty but fresh)', async () => {
    await writeLock('');
    const err = await withStateLock(path, () => {}, { timeoutMs: 100, retryMs: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateLockError);
    expect((err as StateLockError).holderPid).toBeNull();
  });

  for (const [what, content, ageMs, bootId] of [
    ['whose pid is gone', () => ({ pid: deadPid(), bootId: 'boot-a', since: 'x', token: 't' }), 0, 'boot-a'],
    [
      'of an earlier boot',
      () => ({ pid: process.ppid, bootId: 'boot-old', since: 'x', token: 't' }),
      0,
      'boot-a',
    ],
    [
      'not refreshed for too long',
      () => ({ pid: process.ppid, bootId: 'boot-a', since: 'x', token: 't' }),
      60_000,
      'boot-a',
    ],
    ['left empty by a crash', () => '', 60_000, 'boot-a'],
  ] as const) {
    it(`takes over a lock ${what}`, async () => {
      await writeLock(content(), ageMs);
      const holder = await withStateLock(path, async () => JSON.parse(await readFile(lockPath, 'utf8')), {
        bootId,
        staleMs: 30_000,
        timeoutMs: 5_000,
      });
      expect(holder.pid).toBe(process.pid);
      expect(await lockExists()).toBe(false);
    });
  }

  it('keeps its lock fresh while fn runs, so a waiter does not take it over as abandoned', async () => {
    const staleMs = 1_000;
    let waiterResult: unknown = 'not run';
    await withStateLock(
      path,
      async () => {
        waiterResult = await withStateLock(path, () => 'stolen', {
          staleMs,
          timeoutMs: 2_500,
          retryMs: 20,
        }).catch((e: unknown) => e);
      },
      { staleMs },
    );
    expect(waiterResult).toBeInstanceOf(StateLockError);
  });
});

// Real concurrent processes: the children run the compiled src/state against one state file.
describe('withStateLock across processes', () => {
  let out: string;

  beforeAll(async () => {
    out = join(repo, 'node_modules/.cache', `qemu-hook-lock-test-${process.pid}`);
    for (const sub of ['src/model', 'src/state']) {
      for (const name of await readdir(join(repo, sub))) {
        if (!name.endsWith('.ts')) continue;
        const source = await readFile(join(repo, sub, name), 'utf8');
        const js = ts.transpileModule(source, {
          compilerOptions: {
            module: ts.ModuleKind.ESNext,
            target: ts.ScriptTarget.ES2022,
            verbatimModuleSyntax: true,
          },
        }).outputText;
        await mkdir(join(out, sub), { recursive: true });
        await writeFile(join(out, sub, name.replace(/\.ts$/, '.js')), js);
      }
    }
    await writeFile(join(out, 'package.json'), '{"type":"module"}');
    await writeFile(join(out, 'child.js'), CHILD);
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  function runChild(...args: string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [join(out, 'child.js'), ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolvePromise({ code, stderr }));
    });
  }

  it('loses no update when several processes add records at once', async () => {
    const children = 6;
    const iterations = 20;
    const results = await Promise.all(
      Array.from({ length: children }, (_, i) => runChild(path, String(i + 1), String(iterations))),
    );
    for (const r of results) expect(r).toEqual({ code: 0, stderr: '' });
    const state = await loadState(path);
    expect(state.records).toHaveLength(children * iterations);
    expect(new Set(state.records.map((r) => r.address)).size).toBe(children * iterations);
    expect((await readdir(dirname(path))).sort()).toEqual(['state.json']);
  });

  it('processes racing to take over one abandoned lock never hold it together', async () => {
    await writeLock({ pid: deadPid(), bootId: 'boot-a', since: '2024-05-01T10:00:00Z', token: 'dead' });
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) => runChild(path, String(i + 1), '4')),
    );
    for (const r of results) expect(r).toEqual({ code: 0, stderr: '' });
    expect((await loadState(path)).records).toHaveLength(20);
    expect(await lockExists()).toBe(false);
  });

  it('a child killed while holding the lock does not block the next one', async () => {
    const killed = await runChild(path, '1', '1', 'die-holding');
    expect(killed.code).not.toBe(0);
    expect(await lockExists()).toBe(true);
    const next = await runChild(path, '2', '1');
    expect(next).toEqual({ code: 0, stderr: '' });
    expect((await loadState(path)).records.map((r) => r.domain)).toEqual(['vm1', 'vm2']);
  });
});

// Each iteration: lock → load → add one record → save. Inside the lock the child also creates
// `<path>.inside` with O_EXCL, so two holders at once are caught directly, not only by a lost update.
const CHILD = `
import { open, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadState, saveState, upsertRecord, withStateLock } from './src/state/index.js';

const [path, idText, iterText, mode] = process.argv.slice(2);
const id = Number(idText);
const hex = (n, w) => n.toString(16).padStart(w, '0');

async function once(i) {
  const inside = await open(path + '.inside', 'wx');
  try {
    const state = await loadState(path);
    await sleep(2); // widen the window between load and save
    const record = {
      domain: 'vm' + id,
      address: '0000:' + hex(id, 2) + ':' + hex(i % 32, 2) + '.' + Math.floor(i / 32),
      originalDriver: 'nvidia',
      bootId: 'boot-a',
      phase: 'detached',
      since: new Date().toISOString(),
      entry: 'gpu',
    };
    await saveState(path, upsertRecord(state, record));
    if (mode === 'die-holding') {
      await unlink(path + '.inside');
      process.kill(process.pid, 'SIGKILL');
    }
  } finally {
    await inside.close();
    await unlink(path + '.inside');
  }
}

for (let i = 0; i < Number(iterText); i++) {
  await withStateLock(path, () => once(i), { bootId: 'boot-a', timeoutMs: 60_000, retryMs: 5 });
}
`;
