// Whether the hook's startup snapshot was made for this node binary on this CPU: the rule the
// resident hook and `check` apply (hooks/qemu applies it in sh, tested in test/hooks/front.test.ts).
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { snapshotFit, snapshotNote } from '../../src/host/startup-snapshot.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A blob, its record, a stand-in node binary and a cpuinfo, in a fresh folder. */
function setup(record: (node: { size: number; mtime: number }, flags: string) => string) {
  const dir = mkdtempSync(join(tmpdir(), 'qh-snapshot-'));
  dirs.push(dir);
  const node = join(dir, 'node');
  writeFileSync(node, 'not really node');
  utimesSync(node, 1_700_000_000, 1_700_000_000);
  const flags = 'flags\t\t: fpu vme de pse sse sse2 avx2';
  const cpuinfo = join(dir, 'cpuinfo');
  writeFileSync(cpuinfo, `processor\t: 0\n${flags}\nbugs\t\t: none\n\nprocessor\t: 1\n${flags}\n`);
  const blob = join(dir, 'qemu-hook.blob');
  writeFileSync(blob, 'blob');
  const st = statSync(node);
  writeFileSync(`${blob}.node`, record({ size: st.size, mtime: Math.floor(st.mtimeMs / 1000) }, flags));
  return { blob, node, cpuinfo };
}

describe('snapshotFit', () => {
  it('fits when the record names this binary (size and mtime) and this CPU (its first flags line)', () => {
    const s = setup((n, flags) => `${n.size} ${n.mtime}\n${flags}\n`);
    expect(snapshotFit(s.blob, s.node, s.cpuinfo)).toBe('fits');
    expect(snapshotNote('fits', s.node)).toBeNull();
  });

  it('says other-node when the binary changed (an upgrade changes size or mtime)', () => {
    const s = setup((n, flags) => `${n.size} ${n.mtime}\n${flags}\n`);
    utimesSync(s.node, 1_800_000_000, 1_800_000_000);
    expect(snapshotFit(s.blob, s.node, s.cpuinfo)).toBe('other-node');
    expect(snapshotNote('other-node', s.node)).toMatch(
      new RegExp(`does not fit: it was made for another ${s.node} .*run install\\.sh again`),
    );
  });

  it('says other-cpu when the CPU has other features', () => {
    const s = setup((n) => `${n.size} ${n.mtime}\nflags\t\t: fpu vme\n`);
    expect(snapshotFit(s.blob, s.node, s.cpuinfo)).toBe('other-cpu');
    expect(snapshotNote('other-cpu', s.node)).toMatch(/made on a CPU with other features.*install\.sh/);
  });

  it('says absent, and nothing to note, without a blob or without its record', () => {
    const s = setup((n, flags) => `${n.size} ${n.mtime}\n${flags}\n`);
    rmSync(`${s.blob}.node`);
    expect(snapshotFit(s.blob, s.node, s.cpuinfo)).toBe('absent');
    rmSync(s.blob);
    expect(snapshotFit(s.blob, s.node, s.cpuinfo)).toBe('absent');
    expect(snapshotNote('absent', s.node)).toBeNull();
  });
});
