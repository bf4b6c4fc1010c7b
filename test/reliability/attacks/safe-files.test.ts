// Attack: files root writes or reads must not be links planted by someone else, and a lock that
// names a live process must really be that process's.

import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadState, saveState, withStateLock } from '../../../src/state/index.js';
import { configPath, driverOf, hookLog, runHook, statePath } from '../../support/attack.js';
import { cli, hostCopies } from '../../support/cli.js';

const copy = hostCopies();
let dir: string;
let victim: string;
let state: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'qh-attack-files-'));
  mkdirSync(join(dir, 'state'));
  state = join(dir, 'state/state.json');
  victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n', { mode: 0o600 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const empty = { version: 1 as const, records: [] };

describe('files root writes', () => {
  it('a link planted at the temp file name is not written through (nor chmodded)', async () => {
    // The old name was predictable: <state>.<pid>.tmp
    symlinkSync(victim, `${state}.${process.pid}.tmp`);
    await saveState(state, empty);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(statSync(victim).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(state, 'utf8'))).toEqual(empty);
  });

  it('a state file that is a link is refused, not followed', async () => {
    writeFileSync(victim, JSON.stringify(empty));
    symlinkSync(victim, state);
    await expect(loadState(state)).rejects.toThrow(/symbolic link/);
  });

  it('the hook log never appends through a planted link', () => {
    const root = copy('workstation');
    const log = hookLog(root);
    mkdirSync(join(root, 'var/log/libvirt'), { recursive: true });
    symlinkSync(victim, log);
    // Something to log: a per-VM script's outcome is logged at info.
    const scripts = join(root, 'etc/libvirt/hooks/qemu.d/win11/release/end');
    mkdirSync(scripts, { recursive: true });
    writeFileSync(join(scripts, 'noop'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    runHook(root, 'win11', 'release', 'end');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('the per-VM script log never appends through a planted link', () => {
    const root = copy('workstation');
    const scripts = join(root, 'etc/libvirt/hooks/qemu.d/win11/release/end');
    mkdirSync(scripts, { recursive: true });
    writeFileSync(join(scripts, 'say'), '#!/bin/sh\necho hello from the script\n', { mode: 0o755 });
    mkdirSync(join(root, 'var/log/libvirt'), { recursive: true });
    symlinkSync(victim, join(root, 'var/log/libvirt/qemu-hook-scripts.log'));
    runHook(root, 'win11', 'release', 'end');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });
});

describe('the state lock', () => {
  it('a forged lock naming pid 1, dated in the future, does not stall a start', async () => {
    const lock = `${state}.lock`;
    const future = new Date(Date.now() + 3600_000);
    writeFileSync(lock, JSON.stringify({ pid: 1, bootId: null, since: future.toISOString(), token: 'x' }));
    utimesSync(lock, future, future);
    const ran = await withStateLock(state, () => 'ran', { timeoutMs: 2_000, retryMs: 10 });
    expect(ran).toBe('ran');
  });

  it('a lock whose pid is alive but belongs to another process now (pid reused) is taken over', async () => {
    const lock = `${state}.lock`;
    writeFileSync(
      lock,
      JSON.stringify({
        pid: process.ppid,
        start: '1',
        bootId: null,
        since: new Date().toISOString(),
        token: 'x',
      }),
    );
    const ran = await withStateLock(state, () => 'ran', { timeoutMs: 2_000, retryMs: 10 });
    expect(ran).toBe('ran');
  });
});

// The state file, its lock and the log are read and opened with direct system calls, which hold the
// whole process while they wait: a FIFO in their place would hold the hook, deadline and all, and
// libvirt with it (their folders are root's, so only root could plant one; the hook still answers).
describe('a FIFO in the place of a file the hook opens', () => {
  const GPU = '0000:01:00.0';
  const fifo = (path: string, old = false) => {
    mkdirSync(join(path, '..'), { recursive: true });
    execFileSync('mkfifo', [path]);
    if (old) utimesSync(path, new Date(0), new Date(0));
  };

  it('the config: check and the start say so in one line, nothing detached', () => {
    const root = copy('workstation');
    rmSync(configPath(root));
    fifo(configPath(root));
    const line = /config\.yaml: it is not a regular file/;
    const checked = cli(['check', '--root', root]);
    expect(checked.code).toBe(1);
    expect(checked.stderr.trim().split('\n')).toEqual([expect.stringMatching(line)]);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(line)]);
    expect(driverOf(root, GPU)).toBe('nvidia');
  });

  it('the state file: the start is refused in one line, nothing detached', () => {
    const root = copy('workstation');
    fifo(statePath(root));
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/state\.json: it is not a regular file/);
    expect(driverOf(root, GPU)).toBe('nvidia');
  });

  it('the state lock: judged unreadable, taken over, and the start goes on', () => {
    const root = copy('workstation');
    fifo(`${statePath(root)}.lock`, true);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(driverOf(root, GPU)).toBe('vfio-pci');
  });

  it('the hook log: the run logs nowhere and the start goes on', () => {
    const root = copy('workstation');
    fifo(hookLog(root));
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(0);
    expect(driverOf(root, GPU)).toBe('vfio-pci');
  });
});
