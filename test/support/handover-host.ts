import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { makeHandoverHost } from '../../src/cli/wiring.js';
import { silentLogger } from '../../src/hook/logger.js';
import { type HookDeps, runHook } from '../../src/hook/run.js';
import { FixtureDriverControl } from '../../src/host/fixture-driver-control.js';
import { KERNEL_FILE } from '../../src/host/handover/fixture-kernel.js';
import { SERVICES_FILE } from '../../src/host/handover/fixture-services.js';
import { SysfsInventoryReader } from '../../src/host/sysfs/inventory.js';
import { type FaultPoint, installFaults } from '../../src/model/faults.js';
import { hostPaths } from '../../src/model/paths.js';
import { REPO, scratchDir } from '../fixtures/fixture-hosts.js';

// Single-GPU fixture hosts for the hand-over: private copies, the hook run in-process against the
// simulated kernel and service manager, and a comparison of the host with how it started.

export type HandoverHostName = 'single-amd' | 'single-nvidia' | 'intel-laptop';

/** A thrown crash: stops the hook where it is, as SIGKILL would (nothing after it runs). */
export class Crash extends Error {}

export function handoverHosts(): (name: HandoverHostName) => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return (name) => {
    const tmp = mkdtempSync(join(scratchDir(), `qh-${name}-`));
    dirs.push(tmp);
    const root = join(tmp, name);
    cpSync(join(REPO, 'fixtures/hosts', name), root, { recursive: true, verbatimSymlinks: true });
    return root;
  };
}

export function hookDeps(root: string, extra: Partial<HookDeps> = {}): HookDeps {
  const paths = hostPaths(root);
  return {
    paths,
    inventory: new SysfsInventoryReader(paths),
    control: async () => new FixtureDriverControl(root),
    clock: { now: () => new Date() },
    log: silentLogger,
    timeoutMs: 5_000,
    scriptLog: join(root, 'var/log/scripts.log'),
    handoverHost: (timeoutMs) => makeHandoverHost(paths, true, timeoutMs),
    ...extra,
  };
}

export function domainXml(root: string, domain = 'gpu-vm'): string {
  return readFileSync(join(root, 'etc/libvirt/qemu', `${domain}.xml`), 'utf8');
}

export function event(domain: string, op: 'prepare' | 'release') {
  return { domain, op, subop: op === 'prepare' ? 'begin' : 'end', extra: '-' };
}

export async function prepare(
  root: string,
  options: { faults?: (p: FaultPoint) => void; domain?: string } = {},
) {
  const domain = options.domain ?? 'gpu-vm';
  installFaults(options.faults ?? null);
  try {
    return await runHook(event(domain, 'prepare'), domainXml(root, domain), hookDeps(root));
  } finally {
    installFaults(null);
  }
}

export async function release(root: string, domain = 'gpu-vm') {
  return runHook(event(domain, 'release'), domainXml(root, domain), hookDeps(root));
}

/** Crash (throw) at the n-th time `point` is reached. */
export function crashAt(point: FaultPoint): (p: FaultPoint) => void {
  return (p) => {
    if (p === point) throw new Crash(`crash at ${p}`);
  };
}

/** Changes the fixture's simulated kernel (hang, fail) or service manager (fail, linger). */
export function tweak(
  root: string,
  file: 'kernel' | 'services',
  change: (d: Record<string, unknown>) => void,
): void {
  const path = join(root, file === 'kernel' ? KERNEL_FILE : SERVICES_FILE);
  const d = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(d);
  writeFileSync(path, `${JSON.stringify(d, null, 2)}\n`);
}

/**
 * How the host differs from the committed fixture it was copied from, ignoring what a hand-over
 * legitimately leaves: the fixture's own bookkeeping, our state and log, vfio-pci loaded, and the
 * ended graphical sessions (no inverse: the display manager brings back the greeter).
 */
export async function differencesFromStart(root: string, name: HandoverHostName): Promise<string[]> {
  const { diffTrees } = (await import(join(REPO, 'scripts/fixtures/tree-diff.mjs'))) as {
    diffTrees: (a: string, b: string) => string[];
  };
  const original = join(REPO, 'fixtures/hosts', name);
  const sessionPids = new Set(
    (JSON.parse(readFileSync(join(original, SERVICES_FILE), 'utf8')) as { sessions: unknown[] }).sessions
      .length > 0
      ? sessionProcesses(original)
      : [],
  );
  return diffTrees(root, original).filter((d) => {
    const path = d.slice(0, d.lastIndexOf(':'));
    if (
      path === 'etc/qemu-hook/config.yaml' ||
      path.startsWith('var/lib/qemu-hook-fixture/') ||
      path.startsWith('var/lib/qemu-hook/') ||
      path.startsWith('var/log/')
    )
      return false;
    if (/(^|\/)drivers\/vfio-pci(\/|$)/.test(path)) return false;
    const pid = /^proc\/(\d+)\//.exec(path)?.[1];
    return !(pid && sessionPids.has(pid));
  });
}

function sessionProcesses(root: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync(join(root, 'proc'))) {
    const cg = join(root, 'proc', pid, 'cgroup');
    if (existsSync(cg) && readFileSync(cg, 'utf8').includes('/user.slice/')) out.push(pid);
  }
  return out;
}

export function services(root: string): Record<string, string> {
  return (JSON.parse(readFileSync(join(root, SERVICES_FILE), 'utf8')) as { units: Record<string, string> })
    .units;
}

export function stateOf(root: string): {
  records: unknown[];
  handovers?: { step: number; phase: string; target: string }[];
} {
  const p = join(root, 'var/lib/qemu-hook/state.json');
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : { records: [] };
}
