import type { Stats } from 'node:fs';
import { constants, statSync } from 'node:fs';
import { access, lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { HostError } from '../model/errors.js';
import type { HookEvent } from '../model/hook-event.js';
import type { Script } from './scripts.js';

export interface FindOptions {
  /** Who must own scripts and their folders; root on a real host, injectable for tests. */
  readonly requiredUid?: number;
  /**
   * Every folder from here down to a script must be owned by `requiredUid` and not writable by
   * others: "/" on a real host (a user-writable parent could swap the script in by a rename), the
   * root folder under --root. Default: the hooks folder.
   */
  readonly trustFrom?: string;
}

/**
 * The scripts for one event, in the order they would run, each with its verdict. Never runs
 * anything. Refused: a script (or a folder between it and `hooksDir`, or the folder a link
 * points into) not owned by `requiredUid` or writable by group or others, since whoever can
 * change it runs code as root at the next VM start.
 */
export async function findScripts(
  hooksDir: string,
  event: HookEvent,
  options: FindOptions = {},
): Promise<Script[]> {
  const parts = [event.domain, event.op, event.subop];
  if (!parts.every(isPlainName)) return [];
  const root = resolve(hooksDir);
  const target = join(root, ...parts);
  const st = await statOrNull(target);
  if (!st) return [];
  const checker = new Checker(root, options.requiredUid ?? 0, resolve(options.trustFrom ?? root));
  if (st.isFile()) return [await checker.judge(target)];
  if (!st.isDirectory()) return [];

  let names: string[];
  try {
    names = await readdir(target);
  } catch (err) {
    throw HostError.from('list per-VM scripts in', target, err);
  }
  // Byte order, as `LC_ALL=C sort` gives it (libvirt runs hooks with LC_ALL=C).
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const scripts: Script[] = [];
  for (const name of names) {
    const path = join(target, name);
    const entry = await statOrNull(path);
    if (!entry) {
      const link = await lstatOrNull(path);
      if (link?.isSymbolicLink()) scripts.push(checker.skip(path, 'broken symbolic link'));
      continue;
    }
    if (entry.isFile()) scripts.push(await checker.judge(path));
  }
  return scripts;
}

/** A path segment that cannot leave the hooks folder. */
function isPlainName(s: string): boolean {
  return s !== '' && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0');
}

class Checker {
  private readonly dirVerdicts = new Map<string, string | null>();

  constructor(
    private readonly hooksDir: string,
    private readonly requiredUid: number,
    private readonly trustFrom: string,
  ) {}

  skip(path: string, reason: string): Script {
    return { path, name: relative(this.hooksDir, path), verdict: 'skip', reason };
  }

  async judge(path: string): Promise<Script> {
    const name = relative(this.hooksDir, path);
    const st = await stat(path);
    if (!(await isExecutable(path))) return this.skip(path, 'not executable');
    const problem =
      this.unsafe(st, 'it') ??
      (await this.unsafeFolders(dirname(path))) ??
      (await this.unsafeLinkTarget(path));
    const trust = { uid: this.requiredUid, from: this.trustFrom };
    return problem
      ? { path, name, verdict: 'refuse', reason: problem, trust }
      : { path, name, verdict: 'run', reason: null, trust };
  }

  private unsafe(st: Stats, what: string): string | null {
    if (st.uid !== this.requiredUid) return `${what} is owned by uid ${st.uid}, not ${this.owner()}`;
    if (st.mode & 0o022) {
      return `${what} is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
    }
    return null;
  }

  /** Every folder from the script's up to `trustFrom` (or `/` when it lies elsewhere), inclusive. */
  private async unsafeFolders(dir: string): Promise<string | null> {
    for (const d of foldersUpTo(dir, this.trustFrom)) {
      const problem = await this.unsafeFolder(d);
      if (problem) return problem;
    }
    return null;
  }

  private async unsafeFolder(dir: string): Promise<string | null> {
    let verdict = this.dirVerdicts.get(dir);
    if (verdict === undefined) {
      const st = await statOrNull(dir);
      verdict = st ? unsafeFolderStat(st, dir, this.requiredUid) : `its folder ${dir} is gone`;
      this.dirVerdicts.set(dir, verdict);
    }
    return verdict;
  }

  /** A link may point anywhere: the folders holding the real file must be safe too. */
  private async unsafeLinkTarget(path: string): Promise<string | null> {
    const link = await lstat(path);
    if (!link.isSymbolicLink()) return null;
    return this.unsafeFolders(dirname(await realpath(path)));
  }

  private owner(): string {
    return this.requiredUid === 0 ? 'root' : `uid ${this.requiredUid}`;
  }
}

/** `dir` and the folders above it up to `from` (inclusive); up to `/` when `dir` is not under `from`. */
export function foldersUpTo(dir: string, from: string): string[] {
  const stop = relative(from, dir).startsWith('..') ? '/' : from;
  const out: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    out.push(d);
    if (d === stop || d === dirname(d)) return out;
  }
}

/**
 * A folder above a script is safe when only `uid` can change its entries: owned by `uid` (or root)
 * and not writable by group or others, or root-owned with the sticky bit (like /tmp: others can
 * add entries but cannot rename or remove ours).
 */
export function unsafeFolderStat(st: Stats, dir: string, uid: number): string | null {
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (st.uid !== uid && st.uid !== 0)
    return `its folder ${dir} is owned by uid ${st.uid}, not ${uid === 0 ? 'root' : `uid ${uid}`}`;
  if (st.mode & 0o022 && !(st.uid === 0 && st.mode & 0o1000))
    return `its folder ${dir} is writable by group or others (mode ${mode})`;
  return null;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// A direct stat: most events have no scripts, and through fs/promises the failed lookup was a
// thread-pool round trip and a thrown error (3 ms of a start in a resident worker).
async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return statSync(path, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
    throw HostError.from('read per-VM script', path, err);
  }
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}
