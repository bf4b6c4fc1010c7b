// Crash at every step: every fault point a run meets (found by a first run with `trace`) is a kill
// site; for each, a fresh host, the run SIGKILLed there, then what would follow on a real host
// (libvirt's release after a failed start, `qemu-hook recover`). Every device must end on its
// original driver, no moved device may lack its record at any moment, and `reconnect` must exit 0
// in every state in between.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FixtureDriverControl } from '../../src/host/fixture-driver-control.js';
import { FAULT_POINTS } from '../../src/model/faults.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { DomainXml } from '../../src/xml/domain-xml.js';
import { addonBuilt } from '../host/libvirt/support.js';
import { HOSTS } from '../support/cli.js';
import { figure } from './support/figures.js';
import { drivers, faultFile, hook, hosts, type Run, records, run, setFault } from './support/host.js';

const copy = hosts();
const WIN11 = readFileSync(join(HOSTS, 'workstation/etc/libvirt/qemu/win11.xml'), 'utf8');

/**
 * The workstation, made less kind so that giving back takes every path: the kernel picks another
 * driver for the GPU (a bind follows), none for its audio function (a bind), and the USB
 * controller starts with no driver while the kernel would bind one (an unbind follows).
 */
async function awkwardWorkstation(): Promise<string> {
  const root = copy('workstation');
  const prefs = join(root, 'var/lib/qemu-hook-fixture/preferred-drivers.json');
  const preferred = JSON.parse(readFileSync(prefs, 'utf8')) as Record<string, string | null>;
  preferred['0000:01:00.0'] = 'nouveau';
  delete preferred['0000:01:00.1'];
  writeFileSync(prefs, JSON.stringify(preferred));
  await new FixtureDriverControl(root).unbind(PciAddress.parse('0000:05:00.0'));
  rmSync(join(root, 'var/lib/qemu-hook-fixture/driver-calls.jsonl'), { force: true });
  return root;
}

const prepare = (root: string) => hook(root, 'win11', 'prepare', 'begin', WIN11);
const release = (root: string) => hook(root, 'win11', 'release', 'end', WIN11);
const recover = (root: string) => run(root, ['recover', '--root', root]);

interface Scenario {
  readonly name: string;
  /** The host before the run that dies; its drivers are what every device must end on. */
  readonly host: () => Promise<string>;
  /** What happened before the run that dies. */
  readonly before?: (root: string) => Promise<void>;
  readonly victim: (root: string) => Promise<Run>;
  /** What follows the crash on a real host; each must exit 0. */
  readonly after: readonly ((root: string) => Promise<Run>)[];
  /** Extra checks once recovered. */
  readonly check?: (root: string) => void;
}

const ok = async (r: Promise<Run>) => {
  const done = await r;
  if (done.code !== 0) throw new Error(`setup run failed (${done.code}): ${done.stderr}`);
};

const SCENARIOS: Scenario[] = [
  {
    name: 'prepare (libvirt then calls release)',
    host: awkwardWorkstation,
    victim: prepare,
    after: [release, recover],
  },
  {
    name: 'prepare rolling back after a failed detach',
    host: async () => {
      const root = await awkwardWorkstation();
      writeFileSync(
        join(root, 'var/lib/qemu-hook-fixture/faults.json'),
        JSON.stringify([{ op: 'detach', call: 3 }]),
      );
      return root;
    },
    victim: prepare,
    after: [release, recover],
  },
  {
    name: 'release',
    host: awkwardWorkstation,
    before: (root) => ok(prepare(root)),
    victim: release,
    after: [recover],
  },
  {
    name: 'recover (no release ever came)',
    host: awkwardWorkstation,
    before: (root) => ok(prepare(root)),
    victim: recover,
    after: [recover],
  },
  {
    name: 'apply of a moved GPU',
    host: async () => copy('workstation-moved'),
    victim: (root) => run(root, ['apply', '--vm', 'win11', '--yes', '--root', root]),
    after: [(root) => run(root, ['apply', '--vm', 'win11', '--yes', '--root', root])],
    check: (root) => {
      const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
      expect(() => DomainXml.parse(xml)).not.toThrow();
      expect(xml).toContain("bus='0x02'");
    },
  },
];

if (addonBuilt) {
  // The detached helper a stale start leaves behind; libvirt's test driver stands in for the daemon.
  const helper = (root: string) => run(root, ['redefine', 'win11', 'redefine']);
  SCENARIOS.push({
    name: 'the redefine helper',
    host: async () => {
      const root = copy('workstation-moved');
      const config = join(root, 'etc/qemu-hook/config.yaml');
      writeFileSync(config, readFileSync(config, 'utf8').replace(/uri: "[^"]*"/, 'uri: "test:///default"'));
      return root;
    },
    victim: helper,
    after: [helper],
    check: (root) => {
      const log = readFileSync(join(root, 'var/log/libvirt/qemu-hook.log'), 'utf8');
      expect(log).not.toMatch(/another helper is already at work/);
    },
  });
}

/** The points a scenario's run meets, in order, as kill sites `point#n`. */
async function killSites(s: Scenario): Promise<string[]> {
  const root = await s.host();
  await s.before?.(root);
  setFault(root, 'trace');
  await s.victim(root);
  setFault(root, null);
  const met = readFileSync(`${faultFile(root)}.trace`, 'utf8')
    .split('\n')
    .filter(Boolean);
  const seen = new Map<string, number>();
  return met.map((p) => {
    const n = (seen.get(p) ?? 0) + 1;
    seen.set(p, n);
    return `${p}#${n}`;
  });
}

const sites = await Promise.all(SCENARIOS.map(killSites));
const tally = { sites: 0, recovered: 0, met: new Set<string>() };

/** Every moved device has its record, naming the driver to give it back to. */
function expectNothingLost(root: string, baseline: Record<string, string | null>, when: string) {
  const recs = records(root);
  for (const [address, was] of Object.entries(baseline)) {
    const now = drivers(root)[address];
    if (now === was) continue;
    const rec = recs.find((r) => r.address === address);
    expect(rec, `${when}: ${address} is on ${now}, not ${was}, and has no record`).toBeDefined();
    expect(rec?.originalDriver, `${when}: the record of ${address}`).toBe(was);
  }
}

async function expectReconnectOk(root: string, when: string) {
  const r = await hook(root, 'win11', 'reconnect', 'begin', WIN11);
  expect(r.code, `${when}: reconnect exited ${r.code}: ${r.stderr}`).toBe(0);
  expect(r.stdout).toBe('');
}

SCENARIOS.forEach((s, i) => {
  describe(`crash in ${s.name}`, () => {
    it('meets fault points', () => {
      expect(sites[i]!.length).toBeGreaterThan(0);
    });
    for (const site of sites[i]!) {
      tally.sites++;
      tally.met.add(site.split('#')[0]!);
      it.concurrent(`killed at ${site}: everything back, nothing lost`, async () => {
        const root = await s.host();
        const baseline = drivers(root);
        const stateBefore = JSON.stringify(records(root));
        await s.before?.(root);
        setFault(root, site);
        const died = await s.victim(root);
        setFault(root, null);
        expect(died.signal, `the run did not die at ${site}: ${died.code} ${died.stderr}`).toBe('SIGKILL');
        expectNothingLost(root, baseline, `after the crash at ${site}`);
        await expectReconnectOk(root, `after the crash at ${site}`);
        for (const step of s.after) {
          const r = await step(root);
          expect(r.code, `recovery step exited ${r.code}: ${r.stderr}${r.stdout}`).toBe(0);
          expectNothingLost(root, baseline, 'during recovery');
        }
        expect(drivers(root)).toEqual(baseline);
        expect(JSON.stringify(records(root))).toBe(stateBefore);
        await expectReconnectOk(root, 'once recovered');
        s.check?.(root);
        tally.recovered++;
      });
    }
  });
});

describe('crash at every step', () => {
  it('every fault point is met by some scenario, and every kill site recovered', (ctx) => {
    const required = FAULT_POINTS.filter((p) => addonBuilt || p !== 'redefine-claim');
    expect(required.filter((p) => !tally.met.has(p))).toEqual([]);
    figure(
      ctx,
      `crash at every step: fault points: ${tally.sites}, recovered: ${tally.recovered} ` +
        `(${tally.met.size} named points met by ${SCENARIOS.length} kinds of run)` +
        (addonBuilt ? '' : ' (libvirt binding not built: the redefine helper not run)'),
    );
    expect(tally.recovered).toBe(tally.sites);
  });
});
