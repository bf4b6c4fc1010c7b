import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { HostError } from '../model/errors.js';

/** Creates `dir` and any missing parents as 0755 whatever the umask (other users may read state). */
export async function ensureDir(dir: string): Promise<void> {
  ensureDirSync(dir);
}

/** ensureDir as direct system calls, for the state file's save (state/file.ts). */
export function ensureDirSync(dir: string): void {
  try {
    const first = mkdirSync(dir, { recursive: true, mode: 0o755 });
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      chmodSync(d, 0o755);
      if (d === first || d === dirname(d)) break;
    }
  } catch (err) {
    throw HostError.from('create state folder', dir, err);
  }
}
