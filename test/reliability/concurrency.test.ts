// Concurrency: libvirt runs the hooks of different domains at once, all on one state file. Twenty
// hook runs at once (starts of some domains, stops of others) must lose no record and detach no
// device twice; two domains wanting one device at the same moment: one gets it, the other is
// refused with the holder's name.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../support/cli.js';
import { domainXml, pciHostdev } from '../support/domain.js';
import { hookRunsDone, installFront, residentBuilt, residentServers } from '../support/resident.js';
import { figure } from './support/figures.js';
import { drivers, hook, hookFront, journal, type Run, records } from './support/host.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** The generated 300-function host: 128 SR-IOV VFs, each alone in its IOMMU group. */
function largeHost(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qh-concurrency-'));
  made.push(dir);
  const r = spawnSync(
    process.execPath,
    [join(REPO, 'scripts/make-fixtures.mjs'), '--generate-large', dir, '--devices', '300'],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`make-fixtures: ${r.stderr}`);
  return dir;
}

const root = largeHost();
const baseline = drivers(root);
const vfs = Object.keys(baseline).filter((a) => baseline[a] === 'ixgbevf');
const DOMAINS = Array.from({ length: 20 }, (_, i) => ({
  name: `d${String(i).padStart(2, '0')}`,
  vf: vfs[i]!,
}));
const SHARED = vfs[20]!;
const xmlOf = (name: string, address: string) => domainXml(name, [pciHostdev(address, 'ua-qemuhook-nic')]);

writeFileSync(
  join(root, 'etc/qemu-hook/config.yaml'),
  `domains:\n${[...DOMAINS, { name: 'alpha', vf: SHARED }, { name: 'beta', vf: SHARED }]
    .map((d) => `  ${d.name}:\n    devices: [ { name: nic, match: { address: "${d.vf}" } } ]\n`)
    .join('')}stateFile: /var/lib/qemu-hook/state.json\n`,
);

const prepare = (d: { name: string; vf: string }) =>
  hook(root, d.name, 'prepare', 'begin', xmlOf(d.name, d.vf));
const release = (d: { name: string; vf: string }) =>
  hook(root, d.name, 'release', 'end', xmlOf(d.name, d.vf));
const detachCounts = (from: number) => {
  const counts = new Map<string, number>();
  for (const c of journal(root).slice(from))
    if (c.op === 'detach') counts.set(c.address, (counts.get(c.address) ?? 0) + 1);
  return counts;
};

/** One round of 20 events at once (starts of some domains, stops of the others), then all stopped. */
async function round(
  n: number,
  prepare: (d: { name: string; vf: string }) => Promise<Run>,
  release: (d: { name: string; vf: string }) => Promise<Run>,
  counts: { lost: number; twice: number },
): Promise<void> {
  // Which domains run before the round: an alternating pattern that shifts each round.
  const running = DOMAINS.filter((_, i) => (i + n) % 3 === 0);
  for (const d of running) expect((await prepare(d)).code).toBe(0);
  const stopping = new Set(running.map((d) => d.name));
  const from = journal(root).length;

  const runs = await Promise.all(DOMAINS.map((d) => (stopping.has(d.name) ? release(d) : prepare(d))));
  for (const [i, r] of runs.entries()) expect(r.code, `${DOMAINS[i]!.name}: ${r.stderr}`).toBe(0);

  const starting = DOMAINS.filter((d) => !stopping.has(d.name));
  const recs = records(root);
  const missing = starting.filter((d) => !recs.some((r) => r.domain === d.name && r.address === d.vf));
  counts.lost += missing.length;
  expect(missing.map((d) => d.name)).toEqual([]);
  expect(recs.filter((r) => stopping.has(r.domain))).toEqual([]);
  expect(recs.every((r) => r.phase === 'detached' && r.originalDriver === 'ixgbevf')).toBe(true);
  const now = drivers(root);
  for (const d of starting) expect(now[d.vf]).toBe('vfio-pci');
  for (const d of running) expect(now[d.vf]).toBe('ixgbevf');
  const detached = detachCounts(from);
  const doubled = [...detached].filter(([, k]) => k > 1);
  counts.twice += doubled.length;
  expect(doubled).toEqual([]);
  expect(detached.size).toBe(starting.length);

  // Stop everything again, all at once.
  const back = await Promise.all(starting.map(release));
  for (const r of back) expect(r.code, r.stderr).toBe(0);
  expect(records(root)).toEqual([]);
  expect(drivers(root)).toEqual(baseline);
}

describe('20 hook runs at once on one state file', () => {
  const counts = { lost: 0, twice: 0 };
  const rounds = 3;

  for (let n = 0; n < rounds; n++) {
    it(`round ${n + 1}: starts of some domains and stops of the others, all at once`, () =>
      round(n, prepare, release, counts));
  }

  it('figures', (ctx) => {
    figure(
      ctx,
      `concurrency: ${rounds} rounds of 20 hook runs at once: records lost: ${counts.lost}, devices detached twice: ${counts.twice}`,
    );
  });
});

// The same through hooks/qemu and the resident hook (qemu-hook serve): the events of one round
// arrive together, more than it has workers; each still runs in a process of its own.
describe.skipIf(!residentBuilt)('20 hook events at once through the resident hook', () => {
  const counts = { lost: 0, twice: 0 };
  const serve = residentServers('all');
  // Installed once: a front rewritten while others run it would be read half-written.
  let front = '';
  const viaFront = (op: string, subop: string) => (d: { name: string; vf: string }) =>
    // The event's environment (libvirt's, here with a log level) is the worker's.
    hookFront(front, d.name, op, subop, xmlOf(d.name, d.vf), { QEMU_HOOK_LOG_LEVEL: 'debug' });

  it('round 1, resident: starts and stops at once, none lost, none detached twice, each in its own worker', async () => {
    front = installFront(root);
    await serve(root);
    await round(1, viaFront('prepare', 'begin'), viaFront('release', 'end'), counts);
    const runs = hookRunsDone(root).filter((l) => l.resident);
    // 6 starts before the round, 20 events in it, 14 stops after: every one a worker's.
    expect(runs.length).toBe(40);
    expect(new Set(runs.map((l) => l.pid)).size).toBe(40);
  });

  it('figures', (ctx) => {
    figure(
      ctx,
      `concurrency through the resident hook: 20 events at once: records lost: ${counts.lost}, devices detached twice: ${counts.twice}`,
    );
  });
});

describe('two domains wanting one device at the same moment', () => {
  const tries = 5;
  const outcome = { one: 0 };
  const alpha = { name: 'alpha', vf: SHARED };
  const beta = { name: 'beta', vf: SHARED };

  for (let t = 0; t < tries; t++) {
    it(`try ${t + 1}: exactly one gets it, the other is refused naming it`, async () => {
      const from = journal(root).length;
      const [a, b] = await Promise.all([prepare(alpha), prepare(beta)]);
      const winners = [a, b].filter((r) => r.code === 0);
      expect(winners).toHaveLength(1);
      const [winner, loser, loserRun] = a.code === 0 ? ['alpha', 'beta', b] : ['beta', 'alpha', a];
      expect(loserRun.code).toBe(1);
      expect(loserRun.stderr).toMatch(new RegExp(`^qemu-hook: ${loser}: .*held by domain ${winner}`));
      expect(records(root).map((r) => [r.domain, r.address])).toEqual([[winner, SHARED]]);
      expect(detachCounts(from).get(SHARED)).toBe(1);
      // libvirt calls release for both: the refused start's must leave the winner's device alone.
      expect((await hook(root, loser, 'release', 'end', xmlOf(loser, SHARED))).code).toBe(0);
      expect(drivers(root)[SHARED]).toBe('vfio-pci');
      expect((await hook(root, winner, 'release', 'end', xmlOf(winner, SHARED))).code).toBe(0);
      expect(drivers(root)).toEqual(baseline);
      outcome.one++;
    });
  }

  it('figures', (ctx) => {
    figure(
      ctx,
      `one device, two domains at once: ${tries} tries, exactly one winner and the other refused with its name: ${outcome.one}`,
    );
  });
});

// The sanity of the host itself: the test means nothing if the VFs were not there.
it('the host has the VFs the test needs', () => {
  expect(vfs.length).toBeGreaterThan(20);
  expect(readFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'utf8')).toContain(SHARED);
});
