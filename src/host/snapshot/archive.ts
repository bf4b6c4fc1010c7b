import {
  createReadStream,
  createWriteStream,
  lstatSync,
  mkdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { create, Parser, type ReadEntry } from 'tar';

// Snapshots as .tar.gz, through npm's own tar library. Only the commands that write or replay a
// snapshot load this module (it is never on the hook's path).

export interface ArchiveLimits {
  readonly members: number;
  readonly memberBytes: number;
  readonly totalBytes: number;
}

/** What a snapshot may hold; a real desktop's is a few thousand small members, well under 1 MB. */
export const ARCHIVE_LIMITS: ArchiveLimits = {
  members: 100_000,
  memberBytes: 16 * 1024 * 1024,
  totalBytes: 128 * 1024 * 1024,
};

/** Packs the folder `dir` (its contents, as relative paths) into a gzip-compressed tar at `file`. */
export async function packFolder(dir: string, file: string): Promise<void> {
  // portable: no uid/gid/user names or mtimes beyond what replay needs; the file stays reproducible.
  await pipeline(
    create({ gzip: { level: 9 }, cwd: dir, portable: true, noMtime: true }, ['.']),
    createWriteStream(file, { mode: 0o600 }),
  );
}

export class UnsafeArchiveError extends Error {
  override readonly name = 'UnsafeArchiveError';
}

/**
 * Unpacks `file` into the empty folder `dir`, refusing (UnsafeArchiveError, one line) an absolute
 * path, a `..`, a link that leaves the folder or that a later member would be written through,
 * a device, fifo or hard link, a member seen twice, and more members, bytes or bytes in one
 * member than ARCHIVE_LIMITS allow (a tar bomb stops at the limit, not at the end of the stream).
 */
export async function unpackArchive(file: string, dir: string, limits = ARCHIVE_LIMITS): Promise<void> {
  let members = 0;
  let total = 0;
  let inflated = 0;
  let refused: UnsafeArchiveError | null = null;
  const seen = new Set<string>();
  const input = createReadStream(file);
  const gunzip = createGunzip();
  // Headers and padding on top of the members' bytes: a stream far beyond that is a bomb.
  const maxInflated = limits.totalBytes + (limits.members + 2) * 1536;
  const parser = new Parser({ strict: true });

  const stop = (why: string) => {
    refused ??= new UnsafeArchiveError(why);
    input.destroy();
    gunzip.destroy();
    parser.abort(refused);
  };

  gunzip.on('data', (chunk: Buffer) => {
    inflated += chunk.length;
    if (inflated > maxInflated) stop(`it unpacks to more than ${mib(limits.totalBytes)} (a tar bomb?)`);
  });

  const writes: Promise<void>[] = [];
  parser.on('entry', (entry: ReadEntry) => {
    if (refused) return entry.resume();
    members += 1;
    total += entry.size ?? 0;
    const problem = checkEntry(entry, dir, seen, members, total, limits);
    if (problem) {
      entry.resume();
      return stop(problem);
    }
    const path = clean(entry.path);
    const target = join(dir, path);
    if (entry.type === 'Directory') {
      if (path !== '') mkdirSync(target, { recursive: true, mode: 0o755 });
      return entry.resume();
    }
    if (entry.type === 'SymbolicLink') {
      mkdirSync(join(target, '..'), { recursive: true, mode: 0o755 });
      symlinkSync(entry.linkpath ?? '', target);
      return entry.resume();
    }
    mkdirSync(join(target, '..'), { recursive: true, mode: 0o755 });
    const chunks: Buffer[] = [];
    writes.push(
      new Promise((resolve) => {
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => {
          if (!refused) writeFileSync(target, Buffer.concat(chunks), { mode: 0o644, flag: 'wx' });
          resolve();
        });
      }),
    );
  });

  try {
    await pipeline(input, gunzip, parser);
  } catch (err) {
    if (refused) throw refused;
    throw new UnsafeArchiveError(`not a readable .tar.gz (${(err as Error).message.split('\n')[0]})`);
  }
  await Promise.all(writes);
  if (refused) throw refused;
  if (members === 0) throw new UnsafeArchiveError('it holds nothing');
}

function checkEntry(
  entry: ReadEntry,
  dir: string,
  seen: Set<string>,
  members: number,
  total: number,
  limits: ArchiveLimits,
): string | null {
  const raw = entry.path;
  if (members > limits.members) return `more than ${limits.members} members (a tar bomb?)`;
  if ((entry.size ?? 0) > limits.memberBytes)
    return `member ${raw} is ${mib(entry.size ?? 0)}, more than ${mib(limits.memberBytes)}`;
  if (total > limits.totalBytes)
    return `its members add up to more than ${mib(limits.totalBytes)} (a tar bomb?)`;
  if (raw.startsWith('/')) return `member ${raw} has an absolute path`;
  if (raw.split('/').includes('..')) return `member ${raw} has ".." in its path`;
  if (!['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink'].includes(entry.type))
    return `member ${raw} is a ${entry.type}, not a file, folder or symlink`;
  const path = clean(raw);
  if (path !== '' && seen.has(path)) return `member ${raw} appears twice`;
  seen.add(path);
  // Nothing is written through a link of the archive: a link's target is checked only lexically.
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('/');
    try {
      if (lstatSync(join(dir, parent)).isSymbolicLink())
        return `member ${raw} lies beneath the link ${parent}`;
    } catch {
      break; // not there yet: created as a folder
    }
  }
  if (entry.type === 'SymbolicLink') {
    const link = entry.linkpath ?? '';
    // What a process holds (/proc/<pid>/fd/<n> → /dev/dri/card0) is read as a name, never followed.
    if (PROC_FD.test(path) && /^\/dev\/[\w./-]+$/.test(link) && !link.includes('..')) return null;
    const resolved = posix.normalize(posix.join(posix.dirname(path), link));
    if (link.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
      return `member ${raw} is a link to ${link}, outside the archive`;
  }
  return null;
}

const PROC_FD = /^proc\/\d+\/fd\/\d+$/;

/** "./sys/x/" → "sys/x"; "." → "". */
function clean(p: string): string {
  const n = posix.normalize(p).replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

function mib(bytes: number): string {
  return `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;
}
