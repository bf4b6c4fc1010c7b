import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { HostError } from '../model/errors.js';

/**
 * Creates `dir` and any missing parents as 0755 whatever the umask (other users may read state).
 * Direct system calls, as the state file's save and the lock make theirs.
 */
export function ensureDir(dir: string): void {
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
