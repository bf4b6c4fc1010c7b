import {
  closeSync,
  constants,
  fstatSync,
  futimesSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostError } from '../model/errors.js';
import { type FaultPoint, faultPoint } from '../model/faults.js';
import { ensureDir } from './dir.js';
import { StateLockError } from './errors.js';
import { isSameProcess, processStart } from './pid.js';

// Node has no flock(2), so the lock is a file created with O_EXCL. Holders that died (or whose
// boot is over: /var/lib survives reboots, pids do not) are detected and replaced.

export interface LockOptions {
  /** The current kernel boot id, written into the lock so a lock from an earlier boot is ignored. */
  readonly bootId?: string | null;
  /** How long to wait for a live holder before giving up. */
  readonly timeoutMs?: number;
  /** A lock not refreshed for this long is abandoned; holders refresh it every staleMs / 4. */
  readonly staleMs?: number;
  /** Pause between attempts (a little jitter is added). */
  readonly retryMs?: number;
}

export const LOCK_DEFAULTS = { timeoutMs: 30_000, staleMs: 5 * 60_000, retryMs: 50 } as const;

/** A lock file with no readable content yet may be one its creator is still writing. */
const UNREADABLE_GRACE_MS = 5_000;

interface LockContent {
  readonly pid: number;
  /** The holder's start time (/proc/<pid>/stat field 22): tells it from a later process with its pid. */
  readonly start: string | null;
  readonly bootId: string | null;
  readonly since: string;
  readonly token: string;
}

interface Holder {
  readonly raw: string;
  readonly ino: number;
  readonly mtimeMs: number;
  readonly content: LockContent | null;
}

export function lockPathFor(statePath: string): string {
  return `${statePath}.lock`;
}

/**
 * Runs `fn` while holding the exclusive lock beside the state file (`<path>.lock`). Every
 * load-modify-save of the state file by hook processes (libvirt runs hooks of different domains
 * at once) and by `recover` goes through here.
 */
export async function withStateLock<T>(
  statePath: string,
  fn: () => Promise<T> | T,
  options: LockOptions = {},
): Promise<T> {
  const lockPath = lockPathFor(statePath);
  const staleMs = options.staleMs ?? LOCK_DEFAULTS.staleMs;
  const mine = await acquire(lockPath, options);
  faultPoint('lock');
  const heartbeat = setInterval(() => refresh(lockPath, mine.token), Math.max(10, staleMs / 4));
  heartbeat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
    release(lockPath, mine.token);
  }
}

async function acquire(lockPath: string, options: LockOptions): Promise<LockContent> {
  const timeoutMs = options.timeoutMs ?? LOCK_DEFAULTS.timeoutMs;
  const staleMs = options.staleMs ?? LOCK_DEFAULTS.staleMs;
  const retryMs = options.retryMs ?? LOCK_DEFAULTS.retryMs;
  const bootId = options.bootId ?? null;
  const started = Date.now();
  ensureDir(dirname(lockPath));
  for (;;) {
    const mine: LockContent = {
      pid: process.pid,
      start: processStart(process.pid),
      bootId,
      since: new Date().toISOString(),
      // Tells this holder from a later one with the same pid; not a secret (node:crypto would cost 4 ms a start).
      token: `${process.hrtime.bigint().toString(36)}-${Math.random().toString(36).slice(2)}`,
    };
    if (tryCreate(lockPath, mine, 'lock-create')) return mine;
    const holder = readHolder(lockPath);
    if (!holder) continue; // released between our attempt and the read
    if (abandoned(holder, bootId, staleMs)) {
      await takeOver(lockPath, holder, staleMs);
      continue;
    }
    const waited = Date.now() - started;
    if (waited >= timeoutMs) throw lockTimeout(lockPath, holder, waited);
    await sleep(Math.min(retryMs + Math.random() * retryMs, Math.max(1, timeoutMs - waited)));
  }
}

// The lock's system calls are made directly, as the state file's save makes them (state/file.ts):
// through fs/promises a take and a release were eight thread-pool round trips of a hook run.
function tryCreate(
  path: string,
  content: LockContent | { pid: number; start: string | null },
  point?: FaultPoint,
): boolean {
  let fd: number;
  try {
    // O_EXCL never follows a link; O_NOFOLLOW says so twice.
    fd = openSync(
      path,
      constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
      0o644,
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw HostError.from('create lock file', path, err);
  }
  try {
    if (point) faultPoint(point);
    writeFileSync(fd, `${JSON.stringify(content)}\n`, 'utf8');
  } catch (err) {
    closeQuietly(fd);
    unlinkQuietly(path);
    throw HostError.from('write lock file', path, err);
  }
  closeSync(fd);
  return true;
}

function readHolder(path: string): Holder | null {
  let fd: number;
  try {
    // A link in place of the lock is not a lock anyone took: it is read as a link (and judged
    // unreadable). O_NONBLOCK: a FIFO opens at once rather than holding the process (and its deadline).
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') return { raw: '', ino: -1, mtimeMs: 0, content: null };
    throw HostError.from('read lock file', path, err);
  }
  try {
    const st = fstatSync(fd);
    // Anything but a regular file is no lock we wrote: unreadable, so abandoned after the grace time.
    if (!st.isFile()) return { raw: '', ino: st.ino, mtimeMs: st.mtimeMs, content: null };
    const raw = readFileSync(fd, 'utf8');
    return { raw, ino: st.ino, mtimeMs: st.mtimeMs, content: parseContent(raw) };
  } catch (err) {
    throw HostError.from('read lock file', path, err);
  } finally {
    closeSync(fd);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closed is closed
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

function parseContent(raw: string): LockContent | null {
  try {
    const v = JSON.parse(raw) as Partial<LockContent>;
    if (typeof v?.pid !== 'number') return null;
    return {
      pid: v.pid,
      start: typeof v.start === 'string' ? v.start : null,
      bootId: typeof v.bootId === 'string' ? v.bootId : null,
      since: typeof v.since === 'string' ? v.since : '?',
      token: typeof v.token === 'string' ? v.token : '',
    };
  } catch {
    return null;
  }
}

function abandoned(holder: Holder, bootId: string | null, staleMs: number): boolean {
  const now = Date.now();
  // A holder refreshes its lock with the time of now: a date ahead of the clock is not one of ours.
  if (holder.mtimeMs > now + FUTURE_SLACK_MS) return true;
  const age = now - holder.mtimeMs;
  const c = holder.content;
  if (!c) return age > Math.min(UNREADABLE_GRACE_MS, staleMs);
  if (Date.parse(c.since) > now + FUTURE_SLACK_MS) return true;
  if (bootId && c.bootId && c.bootId !== bootId) return true;
  if (!isSameProcess(c.pid, c.start)) return true;
  return age > staleMs;
}

/** Clocks of one host agree; this covers a file system's coarse timestamps. */
const FUTURE_SLACK_MS = 5_000;

/**
 * Removes an abandoned lock, but only if it is still the very file we judged (same inode, same
 * content): two waiters may judge the same dead lock, and the second must not remove the fresh
 * lock the first has since created. A short-lived `.takeover` file serialises the check and unlink.
 */
async function takeOver(lockPath: string, judged: Holder, staleMs: number): Promise<void> {
  const mutex = `${lockPath}.takeover`;
  if (!tryCreate(mutex, { pid: process.pid, start: processStart(process.pid) })) {
    const other = readHolder(mutex);
    if (other && abandoned(other, null, Math.min(staleMs, UNREADABLE_GRACE_MS))) {
      unlinkIfSame(mutex, other);
    }
    return;
  }
  try {
    unlinkIfSame(lockPath, judged);
  } finally {
    unlinkQuietly(mutex);
  }
}

function unlinkIfSame(path: string, judged: Holder): void {
  const now = readHolder(path);
  if (now && now.ino === judged.ino && now.raw === judged.raw) unlinkQuietly(path);
}

function refresh(lockPath: string, token: string): void {
  const holder = readHolderQuietly(lockPath);
  if (holder?.content?.token !== token) return;
  const now = new Date();
  try {
    const fd = openSync(lockPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      futimesSync(fd, now, now);
    } finally {
      closeSync(fd);
    }
  } catch {
    // the next beat tries again; a lock not refreshed for staleMs is judged abandoned
  }
}

/** Removes the lock only while it is still ours (it may have been taken over as abandoned). */
function release(lockPath: string, token: string): void {
  const holder = readHolderQuietly(lockPath);
  if (holder?.content?.token === token) unlinkQuietly(lockPath);
}

function readHolderQuietly(path: string): Holder | null {
  try {
    return readHolder(path);
  } catch {
    return null;
  }
}

function lockTimeout(lockPath: string, holder: Holder, waitedMs: number): StateLockError {
  const c = holder.content;
  const who = c ? `pid ${c.pid} (since ${c.since})` : 'a process that has not written its pid yet';
  return new StateLockError(
    lockPath,
    c?.pid ?? null,
    `held by ${who}; waited ${Math.round(waitedMs / 1000)} s. Another qemu-hook is working on the ` +
      `state file: try again when it is done; if that process is stuck, stop it, and if no qemu-hook ` +
      `process is running, remove ${lockPath}`,
  );
}
