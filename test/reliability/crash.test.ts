// Crash at every step: every fault point a run meets (found by a first run with `trace`) is a kill
// site; for each, a fresh host, the run SIGKILLed there, then what would follow on a real host
// (libvirt's release after a failed start, `qemu-hook recover`). Every device must end on its
// original driver, no moved device may lack its record at any moment, and `reconnect` must exit 0
// in every state in between.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FixtureDriverControl } from '../../src/host/fixture-driver-control.js';
import { FAULT_POINTS } from '../../src/model/faults.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { DomainXml } from '../../src/xml/domain-xml.js';
import { addonBuilt } from '../host/libvirt/support.js';
import { HOSTS } from '../support/cli.js';
import { differencesFromStart } from '../support/handover-host.js';
import { figure } from './support/figures.js';
import {
  drivers,
  faultFile,
  hook,
  hosts,
  type Run,
  records,
  run,
  setFault,
  statePath,
} from './support/host.js';

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

// The single-GPU hand-over (single-nvidia: a service and a daemon to stop, a graphical session to
// end, holders to wait for, fbcon to unbind, efifb on the BAR, four modules to unload).
const GPU_VM = readFileSync(join(HOSTS, 'single-nvidia/etc/libvirt/qemu/gpu-vm.xml'), 'utf8');
const handoverPrepare = (root: string) => hook(root, 'gpu-vm', 'prepare', 'begin', GPU_VM);
const handoverRelease = (root: string) => hook(root, 'gpu-vm', 'release', 'end', GPU_VM);
/** The whole host, not only the drivers, is as it was: services, sessions aside, fbcon, modules. */
const desktopBack = (name: 'single-nvidia' | 'single-amd') => async (root: string) => {
  expect(await differencesFromStart(root, name)).toEqual([]);
};

interface Scenario {
  readonly name: string;
  /** The host before the run that dies; its drivers are what every device must end on. */
  readonly host: () => Promise<string>;
  /** What happened before the run that dies. */
  readonly before?: (root: string) => Promise<void>;
  readonly victim: (root: string) => Promise<Run>;
  /** What follows the crash on a real host; each must exit 0. */
  readonly after: readonly ((root: string) => Promise<Run>)[];
  /** The domain the runs are about (default win11), for the reconnect probes. */
  readonly domain?: { readonly name: string; readonly xml: string };
  /** Extra checks once recovered. */
  readonly check?: (root: string) => void | Promise<void>;
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

const gpuVm = { name: 'gpu-vm', xml: GPU_VM };
SCENARIOS.push(
  {
    name: 'a hand-over prepare (libvirt then calls release)',
    host: async () => copy('single-nvidia'),
    domain: gpuVm,
    victim: handoverPrepare,
    after: [handoverRelease, recover],
    check: desktopBack('single-nvidia'),
  },
  {
    name: 'a hand-over prepare undoing itself after a failed detach',
    host: async () => {
      const root = copy('single-amd');
      writeFileSync(
        join(root, 'var/lib/qemu-hook-fixture/faults.json'),
        JSON.stringify([{ op: 'detach', address: '0000:01:00.1' }]),
      );
      return root;
    },
    domain: gpuVm,
    victim: (root) => hook(root, 'gpu-vm', 'prepare', 'begin', readGpuVm(root)),
    after: [(root) => hook(root, 'gpu-vm', 'release', 'end', readGpuVm(root)), recover],
    check: desktopBack('single-amd'),
  },
  {
    name: 'a hand-over release',
    host: async () => copy('single-nvidia'),
    domain: gpuVm,
    before: (root) => ok(handoverPrepare(root)),
    victim: handoverRelease,
    after: [recover],
    check: desktopBack('single-nvidia'),
  },
  {
    name: 'recover of a hand-over (no release ever came)',
    host: async () => copy('single-nvidia'),
    domain: gpuVm,
    before: (root) => ok(handoverPrepare(root)),
    victim: recover,
    after: [recover],
    check: desktopBack('single-nvidia'),
  },
);

// A step with no inverse (ending the sessions, waiting for holders) leaves a record only while it
// acts: a release after a crash there meets its give-back point.
for (const point of ['handover-record-end-session', 'handover-record-wait-holders']) {
  SCENARIOS.push({
    name: `a release after a hand-over killed at ${point}`,
    host: async () => copy('single-nvidia'),
    domain: gpuVm,
    before: async (root) => {
      setFault(root, point);
      const died = await handoverPrepare(root);
      setFault(root, null);
      if (died.signal !== 'SIGKILL') throw new Error(`setup: the prepare did not die at ${point}`);
    },
    victim: handoverRelease,
    after: [recover],
    check: desktopBack('single-nvidia'),
  });
}

function readGpuVm(root: string): string {
  return readFileSync(join(root, 'etc/libvirt/qemu/gpu-vm.xml'), 'utf8');
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

/**
 * Every moved device has its record, naming the driver to give it back to; or, in a hand-over, the
 * driver went with its module, and the record of that module's unload brings both back.
 */
function expectNothingLost(root: string, baseline: Record<string, string | null>, when: string) {
  const recs = records(root);
  const unloaded = unloadedModules(root);
  for (const [address, was] of Object.entries(baseline)) {
    const now = drivers(root)[address];
    if (now === was) continue;
    const rec = recs.find((r) => r.address === address);
    if (!rec && now === null && was !== null && unloaded.has(moduleOf(root, was))) continue;
    expect(rec, `${when}: ${address} is on ${now}, not ${was}, and has no record`).toBeDefined();
    expect(rec?.originalDriver, `${when}: the record of ${address}`).toBe(was);
  }
}

/** Modules a hand-over record says were (or are being) unloaded. */
function unloadedModules(root: string): Set<string> {
  const path = statePath(root);
  if (!existsSync(path)) return new Set();
  const s = JSON.parse(readFileSync(path, 'utf8')) as {
    handovers?: { data: { kind: string; module?: string } }[];
  };
  return new Set(
    (s.handovers ?? []).flatMap((h) =>
      h.data.kind === 'unload-module' && h.data.module ? [h.data.module] : [],
    ),
  );
}

/** The module that provides a driver, as the fixture's simulated kernel knows it (else the same name). */
function moduleOf(root: string, driver: string): string {
  const path = join(root, 'var/lib/qemu-hook-fixture/kernel.json');
  if (!existsSync(path)) return driver;
  const k = JSON.parse(readFileSync(path, 'utf8')) as { drivers?: Record<string, string> };
  return k.drivers?.[driver] ?? driver;
}

async function expectReconnectOk(root: string, when: string, domain = { name: 'win11', xml: WIN11 }) {
  const r = await hook(root, domain.name, 'reconnect', 'begin', domain.xml);
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
        await expectReconnectOk(root, `after the crash at ${site}`, s.domain);
        for (const step of s.after) {
          const r = await step(root);
          expect(r.code, `recovery step exited ${r.code}: ${r.stderr}${r.stdout}`).toBe(0);
          expectNothingLost(root, baseline, 'during recovery');
        }
        expect(drivers(root)).toEqual(baseline);
        expect(JSON.stringify(records(root))).toBe(stateBefore);
        await expectReconnectOk(root, 'once recovered', s.domain);
        await s.check?.(root);
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
