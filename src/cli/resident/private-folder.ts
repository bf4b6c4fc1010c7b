// The private temporary folders of a worker's rehearsal (its sandbox, its hand-over's socket):
// made under a name that carries the worker's pid, so that the server can remove those of a worker
// killed before it could (SIGKILL leaves no exit handler to run).
import { lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const prefix = (pid: number): string => `qemu-hook-rehearsal-${pid}-`;

/**
 * `f` given a private temporary folder (this user's, 0700), removed after it, or at the process's
 * exit should that come first (a waiting worker told to leave in the middle of a step).
 */
export async function withPrivateFolder<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix(process.pid)));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', remove);
  try {
    return await f(dir);
  } finally {
    process.off('exit', remove);
    remove();
  }
}

/**
 * Removes the private folders the worker `pid` (this user's, gone) left in the temporary folder.
 * Only folders that are what withPrivateFolder makes, this user's and closed to others: the
 * temporary folder is everyone's, and a name alone proves nothing (nor is a link followed).
 */
export function removeLeftBehind(pid: number): void {
  const base = tmpdir();
  const uid = process.getuid?.() ?? 0;
  let names: string[];
  try {
    names = readdirSync(base).filter((n) => n.startsWith(prefix(pid)));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(base, name);
    try {
      const st = lstatSync(path);
      if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0)
        rmSync(path, { recursive: true, force: true });
    } catch {
      // gone already
    }
  }
}
