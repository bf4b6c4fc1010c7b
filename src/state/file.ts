// `promises` of node:fs, loaded on first use (a corrupt file moved aside): a top-level fs/promises
// import costs every start 4 ms.
import {
  closeSync,
  constants,
  fchmodSync,
  promises as fsp,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as z from 'zod/mini';
import { errorMessage, HostError, InvariantError } from '../model/errors.js';
import { faultPoint } from '../model/faults.js';
import { readRegularFile } from '../model/regular-file.js';
import { ensureDir } from './dir.js';
import { StateCorruptError, StateVersionError } from './errors.js';
import { isAlive } from './pid.js';
import { emptyState, STATE_VERSION, type StateFile, StateFileSchema } from './schema.js';

export interface LoadOptions {
  /** Names the `.corrupt.<timestamp>` copy when `.corrupt` is taken. */
  readonly now?: () => Date;
  /** For the commands that change nothing (--simulate, apply, the redefine helper): a corrupt file stays where it is. */
  readonly readOnly?: boolean;
}

/**
 * Reads the state file. Missing → empty state. Unparsable or invalid → the file is moved aside
 * (`<path>.corrupt`) and StateCorruptError is thrown: the file may name detached devices,
 * so it is never silently replaced by an empty state.
 */
export async function loadState(path: string, options: LoadOptions = {}): Promise<StateFile> {
  let text: string;
  try {
    text = readNoFollow(path);
  } catch (err) {
    if (err instanceof HostError) throw err; // not a regular file
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return emptyState();
    if (code === 'ELOOP')
      throw new HostError(
        'read state file',
        path,
        code,
        'it is a symbolic link, which qemu-hook never writes: someone planted it; remove it and check the folder',
      );
    throw HostError.from('read state file', path, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const problem = text.trim() === '' ? 'empty file' : `not valid JSON: ${errorMessage(err)}`;
    throw await corrupt(path, problem, options, err);
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version > STATE_VERSION) throw new StateVersionError(path, version);
  const parsed = StateFileSchema.safeParse(json);
  if (!parsed.success) throw await corrupt(path, summarize(parsed.error), options);
  return parsed.data;
}

/** The file's text; a symbolic link in its place fails (ELOOP) rather than being followed. */
function readNoFollow(path: string): string {
  return readRegularFile(path, {
    operation: 'read state file',
    why: ', which qemu-hook never makes: remove it and check the folder',
    noFollow: true,
  });
}

/** The first problems, one line: the full list is in the kept file for whoever inspects it. */
function summarize(error: z.core.$ZodError): string {
  const shown = error.issues.slice(0, 2).map((i) => `${i.path.join('.') || 'top level'}: ${i.message}`);
  const more = error.issues.length - shown.length;
  return shown.join('; ') + (more > 0 ? ` and ${more} more problem${more > 1 ? 's' : ''}` : '');
}

async function corrupt(
  path: string,
  problem: string,
  options: LoadOptions,
  cause?: unknown,
): Promise<StateCorruptError> {
  if (options.readOnly) return new StateCorruptError(path, null, problem, { cause, readOnly: true });
  const keptAt = await moveAside(path, options.now ?? (() => new Date()));
  return new StateCorruptError(path, keptAt, problem, { cause });
}

/** Moves the file to `.corrupt`, or `.corrupt.<timestamp>` when taken; never overwrites a kept file. */
async function moveAside(path: string, now: () => Date): Promise<string | null> {
  const stamp = now().toISOString().replace(/[:.]/g, '-');
  const candidates = [`${path}.corrupt`, `${path}.corrupt.${stamp}`];
  for (let n = 1; n <= 20; n++) candidates.push(`${path}.corrupt.${stamp}.${n}`);
  for (const target of candidates) {
    try {
      // link + unlink rather than rename: link refuses to replace an existing file.
      await fsp.link(path, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EXDEV') return renameIfFree(path, target);
      return null;
    }
    try {
      await fsp.unlink(path);
    } catch {
      return null;
    }
    return target;
  }
  return null;
}

async function renameIfFree(path: string, target: string): Promise<string | null> {
  try {
    await fsp.stat(target);
    return null;
  } catch {
    try {
      await fsp.rename(path, target);
      return target;
    } catch {
      return null;
    }
  }
}

/**
 * Replaces the state file atomically beside its target: write `<path>.<pid>.<random>.tmp`, fsync
 * it, rename over the file, fsync the folder. A crash at any point leaves either the old or
 * the new file, plus at worst a temp file that load ignores and a later save removes.
 *
 * The temp file is created with O_CREAT|O_EXCL|O_NOFOLLOW: a file or link planted under its name
 * makes the open fail (and another name is tried), so root never writes through a link. The
 * folder itself is checked by the callers (root-owned, not writable by others: host/trust.ts).
 *
 * Direct system calls, not fs/promises: a hook run does nothing else while it saves, and each of
 * the dozen calls was a thread-pool round trip (a save took 3-4 ms of a start's time on the bench
 * host; the same calls made directly, under 1 ms with both fsyncs).
 */
export async function saveState(path: string, state: StateFile): Promise<void> {
  const checked = StateFileSchema.safeParse(state);
  if (!checked.success) {
    throw new InvariantError(`refusing to write an invalid state file: ${z.prettifyError(checked.error)}`);
  }
  const dir = dirname(path);
  ensureDir(dir);
  let tmp: string | null = null;
  const text = `${JSON.stringify(checked.data, null, 2)}\n`;
  try {
    const created = createExclusive(path);
    tmp = created.tmp;
    const fd = created.fd;
    try {
      fchmodSync(fd, 0o644); // the umask must not decide who may read the state
      faultPoint('state-write', () => writeSync(fd, text.slice(0, text.length >> 1)));
      writeFileSync(fd, text, 'utf8');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (tmp) unlinkQuietly(tmp); // only a file we created
    throw HostError.from('write state file', tmp ?? path, err);
  }
  faultPoint('state-rename');
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkQuietly(tmp);
    throw HostError.from('replace state file', path, err);
  }
  syncDir(dir);
  faultPoint('state-saved');
  removeDeadTemps(path);
}

const CREATE_EXCLUSIVE = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;

/** A new temp file beside `path`, under a name nobody can have prepared. */
function createExclusive(path: string): { tmp: string; fd: number } {
  for (let attempt = 0; ; attempt++) {
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`;
    try {
      return { tmp, fd: openSync(tmp, CREATE_EXCLUSIVE, 0o644) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 10) throw err;
    }
  }
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw HostError.from('sync state folder', dir, err);
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already, or a later save removes it (removeDeadTemps)
  }
}

/** Temp files of processes that died between write and rename; those of live processes stay. */
function removeDeadTemps(path: string): void {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)(?:\.[0-9a-z]+)?\.tmp$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !isAlive(pid)) unlinkQuietly(join(dir, name));
  }
}
