// The wait for the GPU's holders: known holders are rechecked alone at each poll, and a full scan
// of every process confirms nobody else holds the GPU before the hand-over goes on.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { executeHandover } from '../../src/hook/handover.js';
import { silentLogger } from '../../src/hook/logger.js';
import type { GpuHolder, GpuNode, HandoverStep } from '../../src/model/handover.js';
import type { HandoverHost } from '../../src/model/ports.js';

const NODE: GpuNode = { path: '/dev/dri/card0', rdev: '226:0', function: '0000:01:00.0' };

/** A process table: pid → the poll (by count of holders() calls) from which and until which it holds card0. */
function scriptedHost(table: Record<number, { from: number; until: number }>) {
  const calls: { among: number[] | null }[] = [];
  const probe = {
    async holders(_nodes: readonly GpuNode[], among?: readonly number[]): Promise<readonly GpuHolder[]> {
      const n = calls.length;
      calls.push({ among: among ? [...among] : null });
      return Object.entries(table)
        .map(([pid, t]) => ({ pid: Number(pid), ...t }))
        .filter((p) => n >= p.from && n < p.until && (!among || among.includes(p.pid)))
        .map((p) => ({
          pid: p.pid,
          command: `p${p.pid}`,
          unit: null,
          userManager: null,
          session: null,
          nodes: [NODE.path],
        }));
    },
  };
  return { host: { probe, services: {}, kernel: {} } as unknown as HandoverHost, calls };
}

const step = (timeoutMs: number): HandoverStep => ({
  step: 1,
  kind: 'wait-holders',
  target: '/dev/dri/card0',
  action: 'wait until no process holds the GPU',
  why: 'test',
  verify: 'no holder',
  timeoutMs,
  inverse: null,
  data: { kind: 'wait-holders', nodes: [NODE], policy: 'refuse' },
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function run(table: Record<number, { from: number; until: number }>, timeoutMs = 5_000) {
  const dir = mkdtempSync(join(tmpdir(), 'qh-holders-'));
  dirs.push(dir);
  const { host, calls } = scriptedHost(table);
  const outcome = executeHandover('vm', [step(timeoutMs)], {
    host,
    stateFile: join(dir, 'state.json'),
    bootId: 'b',
    clock: { now: () => new Date() },
    log: silentLogger,
    pollMs: 1,
  });
  return { outcome, calls };
}

describe('waiting for the GPU holders', () => {
  it('rechecks only the known holder while it stays, then scans every process once it left', async () => {
    const { outcome, calls } = run({ 10: { from: 0, until: 5 } });
    expect((await outcome).ok).toBe(true);
    expect(calls.map((c) => c.among)).toEqual([null, [10], [10], [10], [10], [10], null]);
  });

  it('a process that took the GPU while another was waited for is found by the confirming scan and waited for', async () => {
    const { outcome, calls } = run({ 10: { from: 0, until: 3 }, 20: { from: 2, until: 6 } });
    expect((await outcome).ok).toBe(true);
    // 10 leaves at poll 3; the full scan then finds 20, which is rechecked alone until it leaves.
    expect(calls.map((c) => c.among)).toEqual([null, [10], [10], [10], null, [20], [20], null]);
  });

  it('the refusal names every holder at the deadline, also one that came while another was waited for', async () => {
    const { outcome } = run({ 10: { from: 0, until: 1e9 }, 20: { from: 3, until: 1e9 } }, 50);
    const r = await outcome;
    expect(r.ok).toBe(false);
    expect(r.errors[0]).toMatch(/still held after 0 s by pid 10 p10.*pid 20 p20/);
  });
});
