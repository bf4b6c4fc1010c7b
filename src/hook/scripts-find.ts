import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { access, lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { HostError } from '../model/errors.js';
import type { HookEvent } from '../model/hook-event.js';
import type { Script } from './scripts.js';

export interface FindOptions {
  /** Who must own scripts and their folders; root on a real host, injectable for tests. */
  readonly requiredUid?: number;
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
  const checker = new Checker(root, options.requiredUid ?? 0);
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
    return problem
      ? { path, name, verdict: 'refuse', reason: problem }
      : { path, name, verdict: 'run', reason: null };
  }

  private unsafe(st: Stats, what: string): string | null {
    if (st.uid !== this.requiredUid) return `${what} is owned by uid ${st.uid}, not ${this.owner()}`;
    if (st.mode & 0o022) {
      return `${what} is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
    }
    return null;
  }

  /** Every folder from the script's up to `hooksDir`, inclusive. */
  private async unsafeFolders(dir: string): Promise<string | null> {
    for (let d = dir; ; d = dirname(d)) {
      const problem = await this.unsafeFolder(d);
      if (problem) return problem;
      if (d === this.hooksDir || relative(this.hooksDir, d).startsWith('..') || d === dirname(d)) return null;
    }
  }

  private async unsafeFolder(dir: string): Promise<string | null> {
    let verdict = this.dirVerdicts.get(dir);
    if (verdict === undefined) {
      const st = await statOrNull(dir);
      verdict = st ? this.unsafe(st, `its folder ${dir}`) : `its folder ${dir} is gone`;
      this.dirVerdicts.set(dir, verdict);
    }
    return verdict;
  }

  /** A link may point anywhere: the folder holding the real file must be safe too. */
  private async unsafeLinkTarget(path: string): Promise<string | null> {
    const link = await lstat(path);
    if (!link.isSymbolicLink()) return null;
    const real = await realpath(path);
    return this.unsafeFolder(dirname(real));
  }

  private owner(): string {
    return this.requiredUid === 0 ? 'root' : `uid ${this.requiredUid}`;
  }
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
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
