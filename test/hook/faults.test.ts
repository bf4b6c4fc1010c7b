import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { faultsFromFile } from '../../src/hook/faults.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  vi.restoreAllMocks();
});
function file(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'qh-faults-'));
  dirs.push(dir);
  const path = join(dir, 'fault-injection');
  writeFileSync(path, text);
  return path;
}
/** process.kill stubbed: what the switch would have done, without dying. */
function kills(): string[] {
  const seen: string[] = [];
  vi.spyOn(process, 'kill').mockImplementation(((_pid: number, sig: string) => {
    seen.push(sig);
    return true;
  }) as typeof process.kill);
  return seen;
}

describe('the fault-injection file', () => {
  it('is no switch at all when absent', () => {
    expect(faultsFromFile('/nonexistent/fault-injection')).toBeNull();
  });

  it('kills at the first meeting of a point named alone (the lab writes "record" or "detach")', () => {
    const seen = kills();
    const f = faultsFromFile(file('detach\n'))!;
    f('record');
    expect(seen).toEqual([]);
    f('detach');
    expect(seen).toEqual(['SIGKILL']);
  });

  it('kills at the n-th meeting with #n, and ignores lines it does not know', () => {
    const seen = kills();
    const f = faultsFromFile(file('nonsense\nstate-write#3\nlock sideways\n'))!;
    f('state-write');
    f('lock');
    f('state-write');
    expect(seen).toEqual([]);
    f('state-write');
    expect(seen).toEqual(['SIGKILL']);
  });

  it('enospc and eio write half, then fail with that errno; torn writes half, then kills', () => {
    const seen = kills();
    const partial: string[] = [];
    const f = faultsFromFile(file('state-write#1 enospc\nstate-write#2 eio\nstate-write#3 torn\n'))!;
    expect(() => f('state-write', () => partial.push('1'))).toThrow(
      expect.objectContaining({ code: 'ENOSPC' }),
    );
    expect(() => f('state-write', () => partial.push('2'))).toThrow(expect.objectContaining({ code: 'EIO' }));
    f('state-write', () => partial.push('3'));
    expect(partial).toEqual(['1', '2', '3']);
    expect(seen).toEqual(['SIGKILL']);
  });

  it('trace appends every point met to <file>.trace', () => {
    const path = file('trace\n');
    const f = faultsFromFile(path)!;
    f('lock');
    f('state-write');
    f('lock');
    expect(readFileSync(`${path}.trace`, 'utf8')).toBe('lock\nstate-write\nlock\n');
  });
});
