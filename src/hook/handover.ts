import { errorMessage } from '../model/errors.js';
import { faultPoint } from '../model/faults.js';
import type { GpuHolder, HandoverStep, HandoverTarget } from '../model/handover.js';
import type { Clock, HandoverHost } from '../model/ports.js';
import { withTimeout } from '../model/timeout.js';
import { hasInverse, holderText, passable } from '../plan/handover.js';
import { loadState, saveState } from '../state/file.js';
import { type LockOptions, withStateLock } from '../state/lock.js';
import { removeHandover, staleHandovers, upsertHandover, withHandovers } from '../state/records.js';
import type { HandoverRecord, StateFile } from '../state/schema.js';
import type { HookLogger } from './logger.js';

// Carries out the hand-over steps (plan/handover.ts), write-ahead: each step's record, with what
// its inverse needs, is in the state file before the step acts. Every wait polls its condition
// with a deadline (no fixed sleeps); every write that can block runs under the step's deadline.
// A failure at step k undoes k…1; the give-back runs the inverses in reverse, each verified, and
// keeps going past a failure so the display manager always comes back.

export interface HandoverDeps {
  readonly host: HandoverHost;
  readonly stateFile: string;
  readonly bootId: string | null;
  readonly clock: Clock;
  readonly log: HookLogger;
  readonly lock?: LockOptions;
  /** Pause between polls; 100–250 ms keeps the hook's share small without busy-waiting. */
  readonly pollMs?: number;
  /** Deadline of a give-back step whose record predates `timeoutMs` in records. */
  readonly defaultTimeoutMs?: number;
}

export interface HandoverOutcome {
  readonly ok: boolean;
  readonly errors: readonly string[];
  /** Wall time of the whole hand-over, and the part not spent waiting for services or holders. */
  readonly ms: number;
  readonly hookMs: number;
}

export interface GiveBackOutcome {
  readonly restored: readonly string[];
  readonly failed: readonly { step: number; target: string; error: string }[];
  readonly ms: number;
  readonly hookMs: number;
}

const DEFAULT_POLL_MS = 150;

/** Runs the steps in order; on a failure undoes what was done and says which step failed and why. */
export async function executeHandover(
  domain: string,
  steps: readonly HandoverStep[],
  deps: HandoverDeps,
): Promise<HandoverOutcome> {
  const t = new Timer();
  // A hand-over not yet given back still holds what its records say: a new one would renumber
  // and overwrite them, and the desktop would never come back.
  const left = ((await loadState(deps.stateFile)).handovers ?? []).filter(
    (h) => h.domain === domain && (deps.bootId === null || h.bootId === null || h.bootId === deps.bootId),
  );
  if (left.length > 0 && steps.length > 0)
    return {
      ok: false,
      errors: [
        `an earlier hand-over of ${domain} was not fully given back (${left.map((h) => h.target).join(', ')}): run qemu-hook recover first`,
      ],
      ms: t.total(),
      hookMs: t.own(),
    };
  // A step's "done" is written with the next step's "acting" (one state write per step, not two):
  // a crash in between leaves the finished step recorded as acting, and its inverse is safe either way.
  let finish: ((s: StateFile) => StateFile) | null = null;
  for (const batch of batches(steps)) {
    const lap = t.lap();
    const since = deps.clock.now().toISOString();
    const records: HandoverRecord[] = batch.map((step) => ({
      domain,
      step: step.step,
      target: step.target,
      bootId: deps.bootId,
      phase: 'acting',
      since,
      timeoutMs: step.timeoutMs,
      data: step.data as HandoverRecord['data'],
    }));
    const finished = finish;
    finish = null;
    const written = t.lap();
    await update(deps, (s) => records.reduce((acc, r) => upsertHandover(acc, r), finished ? finished(s) : s));
    const stateMs = written().hookMs;
    const first = batch[0]!;
    faultPoint(`handover-record-${first.kind}`);
    try {
      await act(batch, first.timeoutMs, deps, t);
    } catch (err) {
      const which =
        batch.length === 1
          ? `step ${first.step} (${first.action})`
          : `steps ${batch.map((s) => s.step).join(', ')} (${batch.map((s) => s.action).join(', ')})`;
      const why = `hand-over ${which} failed: ${errorMessage(err)}`;
      deps.log.error(
        { domain, step: first.step, kind: first.kind, err: errorMessage(err) },
        'hand-over step failed; undoing',
      );
      // The failing step may have half acted: its inverse is safe either way.
      const back = await giveBackHandover((r) => r.domain === domain, deps);
      const left = back.failed.map((f) => `${f.target}: ${f.error}`);
      return {
        ok: false,
        errors: [why, ...(left.length > 0 ? [`not undone (run qemu-hook recover): ${left.join('; ')}`] : [])],
        ms: t.total(),
        hookMs: t.own(),
      };
    }
    faultPoint(`handover-${first.kind}`);
    const doneAt = deps.clock.now().toISOString();
    finish = (s) =>
      batch.reduce(
        (acc, step, i) =>
          hasInverse(step.data)
            ? upsertHandover(acc, { ...records[i]!, phase: 'done', since: doneAt })
            : removeHandover(acc, domain, step.step),
        s,
      );
    deps.log.info(
      {
        domain,
        step: first.step,
        ...(batch.length > 1 ? { steps: batch.map((s) => s.step) } : {}),
        kind: first.kind,
        target: batch.map((s) => s.target).join(', '),
        ...lap(),
        stateMs,
      },
      'hand-over step done',
    );
  }
  if (finish) await update(deps, finish);
  const out = { ok: true, errors: [], ms: t.total(), hookMs: t.own() };
  if (steps.length > 0)
    deps.log.info({ domain, ms: out.ms, hookMs: out.hookMs, waitedMs: t.waited() }, 'hand-over done');
  return out;
}

/**
 * Runs the inverses of the recorded steps `select` picks (of this boot; earlier boots' are dropped:
 * the reboot gave everything back), last step first. A record is dropped only once its inverse is
 * verified; a failure is collected and the rest still run.
 */
export async function giveBackHandover(
  select: (r: HandoverRecord) => boolean,
  deps: HandoverDeps,
  options: { only?: (r: HandoverRecord) => boolean; dryRun?: boolean } = {},
): Promise<GiveBackOutcome> {
  const t = new Timer();
  let picked: HandoverRecord[] = [];
  await update(deps, (s) => {
    const stale = staleHandovers(s, deps.bootId);
    for (const r of stale)
      deps.log.warn({ domain: r.domain, step: r.step }, 'dropping hand-over record from an earlier boot');
    picked = (s.handovers ?? []).filter(
      (r) => !stale.includes(r) && select(r) && (options.only?.(r) ?? true),
    );
    return stale.length > 0 && !options.dryRun
      ? withHandovers(
          s,
          (s.handovers ?? []).filter((r) => !stale.includes(r)),
        )
      : s;
  });
  const restored: string[] = [];
  const failed: { step: number; target: string; error: string }[] = [];
  for (const r of [...picked].sort((a, b) => b.step - a.step || a.domain.localeCompare(b.domain))) {
    if (options.dryRun) {
      restored.push(r.target);
      continue;
    }
    const lap = t.lap();
    try {
      await undo(r.data, r.timeoutMs ?? deps.defaultTimeoutMs ?? 15_000, deps, t);
      faultPoint(`handover-giveback-${r.data.kind}`);
      const written = t.lap();
      await update(deps, (s) => removeHandover(s, r.domain, r.step));
      const stateMs = written().hookMs;
      restored.push(r.target);
      deps.log.info(
        { domain: r.domain, step: r.step, target: r.target, ...lap(), stateMs },
        'hand-over step given back',
      );
    } catch (err) {
      failed.push({ step: r.step, target: r.target, error: errorMessage(err) });
      deps.log.error(
        { domain: r.domain, step: r.step, target: r.target, err: errorMessage(err) },
        'hand-over give-back failed; record kept for qemu-hook recover',
      );
    }
  }
  if (picked.length > 0 && !options.dryRun)
    deps.log.info(
      { ms: t.total(), hookMs: t.own(), waitedMs: t.waited(), failed: failed.length },
      'give-back done',
    );
  return { restored, failed, ms: t.total(), hookMs: t.own() };
}

/** The give-back of a domain around its devices' reattach: modules first, so the kernel's probe finds the original driver. */
export function isModuleRecord(r: HandoverRecord): boolean {
  return r.data.kind === 'unload-module';
}

// --- the steps ---------------------------------------------------------------------------------

/**
 * Steps carried out together: services stopped one after the other are stopped in one transaction
 * and verified with one question (a child process each, not two per service); any other step alone.
 */
function batches(steps: readonly HandoverStep[]): HandoverStep[][] {
  const out: HandoverStep[][] = [];
  for (const step of steps) {
    const last = out.at(-1)?.[0];
    if (step.kind === 'stop-service' && last?.kind === 'stop-service' && last.timeoutMs === step.timeoutMs)
      out.at(-1)!.push(step);
    else out.push([step]);
  }
  return out;
}

async function act(
  batch: readonly HandoverStep[],
  timeoutMs: number,
  deps: HandoverDeps,
  t: Timer,
): Promise<void> {
  const { services, kernel, probe } = deps.host;
  const deadline = Date.now() + timeoutMs;
  const poll = deps.pollMs ?? DEFAULT_POLL_MS;
  const data = batch[0]!.data;
  switch (data.kind) {
    case 'stop-service': {
      const units = batch.flatMap((s) => (s.data.kind === 'stop-service' ? [s.data.unit] : []));
      const named = units.join(', ');
      await t.waiting(() => withTimeout(services.stop(units), left(deadline), `stopping ${named}`));
      await until(
        deadline,
        poll,
        t,
        async () => (await services.activeAmong(units)).size === 0,
        async () => {
          const up = [...(await services.activeAmong(units))];
          return `${up.join(', ')} ${up.length === 1 ? 'is' : 'are'} still active`;
        },
      );
      return;
    }
    case 'end-session': {
      for (const unit of data.userUnits) {
        // Best effort: the session's end stops them too; the user manager may already be gone.
        await t
          .waiting(() =>
            withTimeout(
              services.stopUserUnit(data.user, unit),
              left(deadline),
              `stopping ${data.user}'s ${unit}`,
            ),
          )
          .catch((err) => deps.log.warn({ unit, err: errorMessage(err) }, 'user unit stop failed'));
      }
      await t.waiting(() =>
        withTimeout(
          services.terminateSession(data.session),
          left(deadline),
          `terminating session ${data.session}`,
        ),
      );
      await until(
        deadline,
        poll,
        t,
        async () => !(await services.sessions()).some((s) => s.id === data.session),
        `session ${data.session} is still there`,
      );
      return;
    }
    case 'wait-holders':
      return waitForHolders(data, deadline, timeoutMs, deps, t);
    case 'unbind-vtcon': {
      const v = (await probe.vtcons()).find((c) => c.name === data.name);
      if (!v?.bound) return;
      await withTimeout(kernel.bindVtcon(v.vtcon, false), left(deadline), `unbinding ${v.vtcon}`);
      await until(
        deadline,
        poll,
        t,
        async () => !(await probe.vtcons()).some((c) => c.name === data.name && c.bound),
        `the vtcon "${data.name}" is still bound`,
      );
      return;
    }
    case 'release-firmware-fb': {
      const now = await probe.platformDriver(data.device);
      if (now === 'gone' || now === null) return;
      try {
        await withTimeout(
          kernel.unbindPlatform(data.device, now),
          left(deadline),
          `unbinding ${data.device}`,
        );
      } catch (err) {
        // The native driver unregistered it (aperture takeover): nothing left to release.
        if (codeOf(err) !== 'ENODEV') throw err;
      }
      await until(
        deadline,
        poll,
        t,
        async () => {
          const d = await probe.platformDriver(data.device);
          return d === null || d === 'gone';
        },
        `${data.device} is still bound`,
      );
      return;
    }
    case 'unload-module':
      await until(
        deadline,
        poll,
        t,
        async () => {
          const m = await probe.module(data.module);
          if (!m.loaded) return true;
          try {
            await withTimeout(kernel.unloadModule(data.module), left(deadline), `unloading ${data.module}`);
          } catch (err) {
            // In use: its refcount falls as the last holders close the card; try again.
            if (['EAGAIN', 'EBUSY', 'EWOULDBLOCK'].includes(codeOf(err) ?? '')) return false;
            throw err;
          }
          return !(await probe.module(data.module)).loaded;
        },
        async () => {
          const m = await probe.module(data.module);
          return `${data.module} is still in use (refcnt ${m.refcnt ?? '?'}${m.holders.length > 0 ? `, used by ${m.holders.join(', ')}` : ''})`;
        },
      );
      return;
  }
}

async function undo(data: HandoverTarget, timeoutMs: number, deps: HandoverDeps, t: Timer): Promise<void> {
  const { services, kernel, probe } = deps.host;
  const deadline = Date.now() + timeoutMs;
  const poll = deps.pollMs ?? DEFAULT_POLL_MS;
  switch (data.kind) {
    case 'stop-service':
      if (await services.isActive(data.unit)) return;
      await t.waiting(() => withTimeout(services.start(data.unit), left(deadline), `starting ${data.unit}`));
      await until(deadline, poll, t, () => services.isActive(data.unit), `${data.unit} is not active`);
      return;
    case 'unbind-vtcon':
      // fbcon comes back with the first fb (bound by itself); find it by name, whatever its number.
      await until(
        deadline,
        poll,
        t,
        async () => {
          const v = (await probe.vtcons()).find((c) => c.name === data.name);
          if (!v) return false;
          if (v.bound) return true;
          await withTimeout(kernel.bindVtcon(v.vtcon, true), left(deadline), `binding ${v.vtcon}`);
          return (await probe.vtcons()).some((c) => c.name === data.name && c.bound);
        },
        `no vtcon named "${data.name}" is bound (is a framebuffer registered?)`,
      );
      return;
    case 'release-firmware-fb': {
      const now = await probe.platformDriver(data.device);
      if (now === 'gone' || now !== null) return;
      try {
        await withTimeout(
          kernel.bindPlatform(data.device, data.driver),
          left(deadline),
          `binding ${data.device}`,
        );
      } catch (err) {
        if (codeOf(err) === 'ENODEV') return;
        throw err;
      }
      await until(
        deadline,
        poll,
        t,
        async () => (await probe.platformDriver(data.device)) !== null,
        `${data.device} is not bound to ${data.driver}`,
      );
      return;
    }
    case 'unload-module': {
      if ((await probe.module(data.module)).loaded) return;
      const params = Object.fromEntries(Object.entries(data.parameters).filter(([, v]) => passable(v)));
      await withTimeout(kernel.loadModule(data.module, params), left(deadline), `loading ${data.module}`);
      await until(
        deadline,
        poll,
        t,
        async () => (await probe.module(data.module)).loaded,
        `${data.module} is not loaded`,
      );
      return;
    }
    case 'end-session':
    case 'wait-holders':
      return;
  }
}

/** Polls until nobody holds the nodes; by policy, signals the stragglers; else names them. */
async function waitForHolders(
  data: Extract<HandoverTarget, { kind: 'wait-holders' }>,
  deadline: number,
  timeoutMs: number,
  deps: HandoverDeps,
  t: Timer,
): Promise<void> {
  const { probe, services } = deps.host;
  const poll = deps.pollMs ?? DEFAULT_POLL_MS;
  const start = Date.now();
  let last: readonly GpuHolder[] = [];
  let termed = false;
  let killed = false;
  for (;;) {
    // Known holders are rechecked alone (a full scan reads every process's fds and maps, the
    // costliest probe of a hand-over); once they are gone, a full scan confirms nobody else is.
    if (last.length > 0)
      last = await probe.holders(
        data.nodes,
        last.map((h) => h.pid),
      );
    if (last.length === 0) last = await probe.holders(data.nodes);
    if (last.length === 0) return;
    const elapsed = Date.now() - start;
    if (data.policy !== 'refuse' && !termed && elapsed >= timeoutMs / 2) {
      termed = true;
      await signalAll(last, 'SIGTERM', services, deps.log);
    }
    if (data.policy === 'kill' && !killed && elapsed >= (timeoutMs * 3) / 4) {
      killed = true;
      await signalAll(last, 'SIGKILL', services, deps.log);
    }
    if (Date.now() >= deadline) break;
    await t.sleep(Math.min(poll, Math.max(0, deadline - Date.now())));
  }
  // The refusal names everyone holding the nodes now, not only those being waited for.
  last = await probe.holders(data.nodes);
  if (last.length === 0) return;
  const units = [...new Set(last.filter((h) => h.unit && !h.userManager && !h.session).map((h) => h.unit!))];
  const fix = [
    ...(units.length > 0 ? [`list ${units.join(', ')} in handover.services`] : []),
    ...(data.policy === 'refuse' ? ['stop them', 'set handover.holders: term'] : []),
  ];
  throw new Error(
    `still held after ${Math.round(timeoutMs / 1000)} s by ${last.map(holderText).join('; ')}${fix.length > 0 ? `: ${fix.join(', or ')}` : ''}`,
  );
}

/** Never PID 1, never libvirt's daemons (they are starting this VM). */
const UNTOUCHABLE = /^(libvirtd|virtqemud|virtlogd|systemd)$/;

async function signalAll(
  holders: readonly GpuHolder[],
  signal: 'SIGTERM' | 'SIGKILL',
  services: HandoverHost['services'],
  log: HookLogger,
): Promise<void> {
  for (const h of holders) {
    if (h.pid === 1 || UNTOUCHABLE.test(h.command)) continue;
    log.warn(
      { pid: h.pid, command: h.command, unit: h.unit, signal },
      'signalling a process that still holds the GPU',
    );
    await services
      .signal(h.pid, signal)
      .catch((err) => log.warn({ pid: h.pid, err: errorMessage(err) }, 'signal failed'));
  }
}

// --- helpers -----------------------------------------------------------------------------------

/** Polls `ok` until it holds or the deadline passes, then throws with `why`. */
async function until(
  deadline: number,
  pollMs: number,
  t: Timer,
  ok: () => Promise<boolean>,
  why: string | (() => Promise<string>),
): Promise<void> {
  for (;;) {
    if (await ok()) return;
    if (Date.now() >= deadline) throw new Error(typeof why === 'string' ? why : await why());
    await t.sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())));
  }
}

function left(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}

function codeOf(err: unknown): string | undefined {
  return (err as { code?: string })?.code;
}

/** Read-modify-write of the state file under its lock: held only for the write, never while a step runs. */
async function update(deps: HandoverDeps, change: (s: StateFile) => StateFile): Promise<void> {
  await withStateLock(
    deps.stateFile,
    async () => {
      const before = await loadState(deps.stateFile);
      const after = change(before);
      if (after !== before) await saveState(deps.stateFile, after);
    },
    { bootId: deps.bootId, ...deps.lock },
  );
}

/**
 * Wall time; the part spent waiting on others (services, holders, polls); and the hook's own share:
 * the CPU time of this process (user and system, so the kernel work of its own sysfs writes too),
 * not the service manager's, the children's or the time asleep.
 */
class Timer {
  private readonly start = Date.now();
  private readonly cpu = process.cpuUsage();
  private waitedMs = 0;

  async waiting<T>(work: () => Promise<T>): Promise<T> {
    const s = Date.now();
    try {
      return await work();
    } finally {
      this.waitedMs += Date.now() - s;
    }
  }

  sleep(ms: number): Promise<void> {
    return this.waiting(() => new Promise((r) => setTimeout(r, ms)));
  }

  total(): number {
    return Date.now() - this.start;
  }

  waited(): number {
    return this.waitedMs;
  }

  own(): number {
    const used = process.cpuUsage(this.cpu);
    return Math.round((used.user + used.system) / 1000);
  }

  /** From now to when the returned function is called: one step's wall, own and waited time. */
  lap(): () => { ms: number; hookMs: number; waitedMs: number } {
    const at = { ms: this.total(), hookMs: this.own(), waitedMs: this.waitedMs };
    return () => ({
      ms: this.total() - at.ms,
      hookMs: this.own() - at.hookMs,
      waitedMs: this.waitedMs - at.waitedMs,
    });
  }
}

/** What a domain's whole give-back did: its devices and its hand-over steps, each on its own. */
export interface WholeReleaseOutcome<D extends DeviceReleaseOutcome> {
  readonly devices: D;
  /** Hand-over targets given back (or, dry run, that would be). */
  readonly handoverRestored: readonly string[];
  readonly handoverFailed: readonly { readonly target: string; readonly error: string }[];
}

export interface DeviceReleaseOutcome {
  readonly failed: readonly { readonly address: string; readonly error: string }[];
}

/** Every failure of a whole give-back, one line each ("0000:01:00.0: …", "sddm.service: …"). */
export function releaseFailures(o: WholeReleaseOutcome<DeviceReleaseOutcome>): string[] {
  return [
    ...o.devices.failed.map((f) => `${f.address}: ${f.error}`),
    ...o.handoverFailed.map((f) => `${f.target}: ${f.error}`),
  ];
}

/**
 * A domain's whole give-back: modules first (so the reattach's probe finds the original driver
 * loaded), then its devices (execute.ts), then the other hand-over steps in reverse: firmware fb,
 * fbcon, display manager, services. Failures are collected; every part still runs.
 */
export async function releaseWithHandover<D extends DeviceReleaseOutcome>(
  select: (domain: string) => boolean,
  devices: () => Promise<D>,
  deps: HandoverDeps | null,
  options: { dryRun?: boolean } = {},
): Promise<WholeReleaseOutcome<D>> {
  const handoverRestored: string[] = [];
  const handoverFailed: { target: string; error: string }[] = [];
  const pick = (r: HandoverRecord) => select(r.domain);
  const collect = (o: GiveBackOutcome) => {
    handoverRestored.push(...o.restored);
    handoverFailed.push(...o.failed.map((f) => ({ target: f.target, error: f.error })));
  };
  if (deps) collect(await giveBackHandover(pick, deps, { only: isModuleRecord, ...options }));
  const d = await devices();
  if (deps) collect(await giveBackHandover(pick, deps, { only: (r) => !isModuleRecord(r), ...options }));
  return { devices: d, handoverRestored, handoverFailed };
}
