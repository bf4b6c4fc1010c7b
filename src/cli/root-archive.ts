import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../model/errors.js';

export interface OpenedRoot {
  /** The folder to read the host from. */
  readonly dir: string;
  /** Removes the unpacked copy (a no-op for a folder). */
  cleanup(): void;
}

/**
 * `--root` names a folder, or a snapshot (`qemu-hook snapshot`'s .tar.gz): unpacked into a private
 * temp folder (0700) that `cleanup` removes. An unsafe or unreadable archive is refused with one line.
 */
export async function openRoot(root: string): Promise<OpenedRoot> {
  let isFile = false;
  try {
    isFile = statSync(root).isFile();
  } catch {
    // a missing folder reads as an empty host, as before
  }
  if (!isFile) return { dir: root, cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'qemu-hook-root-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    const { unpackArchive, UnsafeArchiveError } = await import('../host/snapshot/archive.js');
    try {
      await unpackArchive(root, dir);
    } catch (err) {
      if (err instanceof UnsafeArchiveError)
        throw new UsageError(
          err.message.startsWith('not a readable')
            ? `--root ${root} is not a folder, nor a snapshot: ${err.message}`
            : `--root ${root}: refused: ${err.message}`,
        );
      throw err;
    }
  } catch (err) {
    cleanup();
    throw err;
  }
  return { dir, cleanup };
}
