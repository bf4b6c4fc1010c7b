import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { GpuHolder, GpuNode, KernelModule, LoginSession } from '../../model/handover.js';
import type { HostPaths } from '../../model/paths.js';
import type { ServiceManager } from '../../model/ports.js';
import { listDir } from '../sysfs/sysfs-files.js';
import { errno, FIXTURE_DIR, fixtureRoot, moduleUsers, moveInside, writeInside } from './fixture-kernel.js';
import { placeOf } from './holders.js';
import { SysfsHandoverProbe } from './probe.js';

// A fake systemd/logind over a fixture host, kept in var/lib/qemu-hook-fixture/services.json so
// that separate processes (the hook, then `recover`) see one host. Stopping a unit, a user unit or
// a session moves its processes (proc/<pid>, found by their cgroup) aside; starting the unit brings
// them back. A process listed in `linger` stays N more holder polls after its unit stops (-1: it
// never leaves, and ignores SIGTERM).

export const SERVICES_FILE = `${FIXTURE_DIR}/services.json`;
const STOPPED = `${FIXTURE_DIR}/stopped-proc`;
const LINGERING = `${FIXTURE_DIR}/lingering.json`;

export interface FixtureServices {
  units: Record<string, 'active' | 'inactive'>;
  sessions: LoginSession[];
  /** "<op>:<unit or session>" (stop, start, terminate, stopUser) → "fail" or "hang". */
  fail?: Record<string, 'fail' | 'hang'>;
  /** pid → holder polls it stays after its unit stops; -1: never leaves, ignores SIGTERM. */
  linger?: Record<string, number>;
}

export class FixtureServiceManager implements ServiceManager {
  private readonly root: string;

  constructor(root: string) {
    this.root = fixtureRoot(root);
  }

  async isActive(unit: string): Promise<boolean> {
    return this.read().units[unit] === 'active';
  }

  async activeAmong(units: readonly string[]): Promise<ReadonlySet<string>> {
    const s = this.read();
    return new Set(units.filter((u) => s.units[u] === 'active'));
  }

  /** One by one, in the order given: what systemd's transaction does for units without ordering between them. */
  async stop(units: readonly string[]): Promise<void> {
    for (const unit of units) await this.stopOne(unit);
  }

  private async stopOne(unit: string): Promise<void> {
    await this.gate('stop', unit);
    const s = this.read();
    if (!(unit in s.units)) throw errno('ENOENT', `Unit ${unit} not loaded`);
    s.units[unit] = 'inactive';
    this.write(s);
    this.leave((p) => p.unit === unit && !p.userManager, s);
    this.journal({ op: 'stop', unit });
  }

  async start(unit: string): Promise<void> {
    await this.gate('start', unit);
    const s = this.read();
    if (!(unit in s.units)) throw errno('ENOENT', `Unit ${unit} not found`);
    s.units[unit] = 'active';
    this.write(s);
    const stopped = join(this.root, STOPPED);
    for (const pid of listDir(stopped) ?? []) {
      const p = placeOf(join(stopped, pid, 'cgroup'));
      if (p.unit === unit && !p.userManager)
        moveInside(this.root, join(stopped, pid), join(this.root, 'proc', pid));
    }
    this.journal({ op: 'start', unit });
  }

  async sessions(): Promise<readonly LoginSession[]> {
    return this.read().sessions;
  }

  async stopUserUnit(user: string, unit: string): Promise<void> {
    await this.gate('stopUser', unit);
    const s = this.read();
    const uid = s.sessions.find((x) => x.user === user)?.uid;
    this.leave((p) => p.unit === unit && p.userManager === `user@${uid}.service`, s);
    this.journal({ op: 'stopUser', user, unit });
  }

  async terminateSession(id: string): Promise<void> {
    await this.gate('terminate', id);
    const s = this.read();
    const session = s.sessions.find((x) => x.id === id);
    s.sessions = s.sessions.filter((x) => x.id !== id);
    this.write(s);
    if (session) this.leave((p) => p.session === id || p.userManager === `user@${session.uid}.service`, s);
    this.journal({ op: 'terminate', session: id });
  }

  async signal(pid: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (pid === 1) throw new Error('refusing to signal PID 1');
    const s = this.read();
    this.journal({ op: 'signal', pid, signal });
    if (signal === 'SIGTERM' && s.linger?.[String(pid)] === -1) return;
    const dir = join(this.root, 'proc', String(pid));
    // A signalled process is gone for good: it does not come back with its unit.
    if (existsSync(dir)) moveInside(this.root, dir, join(this.root, FIXTURE_DIR, 'killed-proc', String(pid)));
  }

  private leave(match: (p: ReturnType<typeof placeOf>) => boolean, s: FixtureServices): void {
    const lingering = readJson<Record<string, number>>(join(this.root, LINGERING), {});
    for (const pid of listDir(join(this.root, 'proc')) ?? []) {
      if (!/^\d+$/.test(pid)) continue;
      if (!match(placeOf(join(this.root, 'proc', pid, 'cgroup')))) continue;
      const linger = s.linger?.[pid];
      if (linger !== undefined && linger !== 0) lingering[pid] = linger;
      else moveInside(this.root, join(this.root, 'proc', pid), join(this.root, STOPPED, pid));
    }
    writeInside(this.root, join(this.root, LINGERING), `${JSON.stringify(lingering)}\n`);
  }

  private async gate(op: string, what: string): Promise<void> {
    const how = this.read().fail?.[`${op}:${what}`];
    if (how === 'hang') await new Promise<never>(() => {});
    if (how === 'fail') throw new Error(`${op} ${what} failed (injected)`);
  }

  private read(): FixtureServices {
    return readJson<FixtureServices>(join(this.root, SERVICES_FILE), { units: {}, sessions: [] });
  }

  private write(s: FixtureServices): void {
    writeInside(this.root, join(this.root, SERVICES_FILE), `${JSON.stringify(s, null, 2)}\n`);
  }

  private journal(entry: object): void {
    const path = join(this.root, FIXTURE_DIR, 'handover-calls.jsonl');
    mkdirSync(dirname(path), { recursive: true });
    appendFileSync(path, `${JSON.stringify(entry)}\n`);
  }
}

/**
 * The probe over a fixture: lingering processes leave after their count of holder polls, and a
 * module's refcount is live (processes holding its nodes, dependent modules), as the kernel's is.
 */
export class FixtureHandoverProbe extends SysfsHandoverProbe {
  private readonly root: string;

  constructor(
    paths: HostPaths,
    services: ServiceManager,
    /** For the commands that only report: lingering processes do not age. */
    private readonly readOnly = false,
  ) {
    super(paths, services);
    this.root = fixtureRoot(paths.root);
  }

  override async holders(
    nodes: readonly GpuNode[],
    among?: readonly number[],
  ): Promise<readonly GpuHolder[]> {
    if (this.readOnly) return super.holders(nodes, among);
    const path = join(this.root, LINGERING);
    const lingering = readJson<Record<string, number>>(path, {});
    let changed = false;
    for (const [pid, n] of Object.entries(lingering)) {
      if (n < 0) continue;
      changed = true;
      if (n <= 1) {
        delete lingering[pid];
        const dir = join(this.root, 'proc', pid);
        if (existsSync(dir)) moveInside(this.root, dir, join(this.root, STOPPED, pid));
      } else lingering[pid] = n - 1;
    }
    if (changed) writeInside(this.root, path, `${JSON.stringify(lingering)}\n`);
    return super.holders(nodes, among);
  }

  override async module(name: string): Promise<KernelModule> {
    const m = await super.module(name);
    return m.loaded && !m.builtin ? { ...m, refcnt: moduleUsers(this.root, name) } : m;
  }
}

function readJson<T>(path: string, fallback: T): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return fallback;
  }
}
