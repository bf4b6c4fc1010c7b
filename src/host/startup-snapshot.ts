import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { programFile } from './program-location.js';

// The hook's V8 startup snapshot (dist/qemu-hook.blob) starts Node with the program loaded; V8
// accepts it only from the node binary and on the CPU it was made with. qemu-hook.blob.node records
// both (`stat -L -c '%s %Y'` of the binary, then the first "flags" line of /proc/cpuinfo), as
// scripts/build.mjs and install.sh write it. hooks/qemu applies the same rule in sh (snapshot_fits).

export type SnapshotFit = 'fits' | 'absent' | 'other-node' | 'other-cpu';

/** The running program's snapshot: beside its bundle in dist/ (absent when run from src/). */
export function programSnapshot(): string {
  return join(dirname(programFile()), 'qemu-hook.blob');
}

/** Whether `blob` was made for `node` (default: this process's binary) on this CPU. */
export function snapshotFit(
  blob: string,
  node: string = process.execPath,
  cpuinfo = '/proc/cpuinfo',
): SnapshotFit {
  try {
    if (!existsSync(blob)) return 'absent';
    const [madeFor, madeOn] = readFileSync(`${blob}.node`, 'utf8').split('\n');
    const st = statSync(node);
    if (madeFor !== `${st.size} ${Math.floor(st.mtimeMs / 1000)}`) return 'other-node';
    const flags = readFileSync(cpuinfo, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return flags === madeOn ? 'fits' : 'other-cpu';
  } catch {
    return 'absent'; // no record of what it was made for: unusable, as hooks/qemu sees it
  }
}

/**
 * What `check` says when the snapshot no longer fits: nothing fails, but every event that starts
 * Node (no resident hook, or a command) loads the program the slow way. null when it fits or there
 * is none (a checkout that was not built, or a node without snapshots).
 */
export function snapshotNote(fit: SnapshotFit, node: string = process.execPath): string | null {
  if (fit === 'fits' || fit === 'absent') return null;
  const why =
    fit === 'other-node'
      ? `it was made for another ${node} (Node.js upgraded or reinstalled since)`
      : 'it was made on a CPU with other features (the disk moved to another machine, or a VM changed CPU model)';
  return `the hook's startup snapshot does not fit: ${why}; hook events that start Node load the program from its code cache instead, which is slower; run install.sh again to make a new one`;
}
