// `promises` of node:fs: loaded on first use, not at every start (see state/file.ts).
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { HostError } from '../model/errors.js';

/** Creates `dir` and any missing parents as 0755 whatever the umask (other users may read state). */
export async function ensureDir(dir: string): Promise<void> {
  try {
    const first = await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      await fsp.chmod(d, 0o755);
      if (d === first || d === dirname(d)) break;
    }
  } catch (err) {
    throw HostError.from('create state folder', dir, err);
  }
}
