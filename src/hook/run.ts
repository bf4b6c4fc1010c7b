import { defaultConfig, loadConfigFile } from '../config/load.js';
import type { Config, DomainConfig } from '../config/model.js';
import type { Inventory } from '../model/device.js';
import { errorMessage } from '../model/errors.js';
import type { HookEvent } from '../model/hook-event.js';
import { type HostPaths, underRoot } from '../model/paths.js';
import type { Plan } from '../model/plan.js';
import type { Clock, DriverControl, HandoverHost, HostSafety, InventoryReader } from '../model/ports.js';
import { correctMovedEntries } from '../plan/correct.js';
import { gpuFunctions, planHandover, sessionHoldersError } from '../plan/handover.js';
import { type PrepareInput, planStart } from '../plan/prepare.js';
import { loadState } from '../state/file.js';
import { handoversFor } from '../state/records.js';
import { DomainXml } from '../xml/domain-xml.js';
import { executePrepare, executeRelease } from './execute.js';
import {
  executeHandover,
  giveBackHandover,
  type HandoverDeps,
  releaseFailures,
  releaseWithHandover,
} from './handover.js';
import type { HookLogger } from './logger.js';
import { findScripts, runScripts, type ScriptResult, scriptsSucceeded } from './scripts.js';

export interface HookDeps {
  readonly paths: HostPaths;
  readonly inventory: InventoryReader;
  /** Made on first use: loading the libvirt binding costs time the fast path should not pay. */
  readonly control: (config: Config) => Promise<DriverControl>;
  readonly clock: Clock;
  readonly log: HookLogger;
  readonly timeoutMs: number;
  readonly scriptOwnerUid?: number;
  /** Checks each device against the host when it is recorded and before it is given back. */
  readonly safety?: HostSafety;
  /** Start the detached redefine helper; false when it could not be started. */
  readonly scheduleRedefine?: (domain: string, restart: boolean) => boolean;
  /** The config as already read by the caller (it needs the log settings first); read here if absent. */
  readonly config?: () => ReturnType<typeof loadConfigFile>;
  /** Where per-VM scripts write their output (never libvirt's pipes). */
  readonly scriptLog: string;
  /** A per-VM script still running after this long is stopped, with its process group. */
  readonly scriptTimeoutMs?: number;
  /** When this run must be over (ms since the epoch, by `clock`): a prepare past it gives back and refuses. */
  readonly deadline?: number;
  /**
   * systemd, logind, the kernel's writes and the GPU probe, made on first use (only a start that
   * takes a GPU, or a release with a hand-over recorded, needs them). Absent: no hand-over support.
   */
  readonly handoverHost?: (timeoutMs: number) => Promise<HandoverHost>;
}

export interface HookResult {
  readonly exitCode: number;
  /** Only migrate/restore may print (replacement XML); everything else leaves stdout empty. */
  readonly stdout: string;
  /** What `virsh start` shows on failure: one or two plain lines. */
  readonly stderr: readonly string[];
}

const OK: HookResult = { exitCode: 0, stdout: '', stderr: [] };

/** One libvirt hook call. Never throws: every failure becomes an exit status and a message. */
export async function runHook(event: HookEvent, xml: string, deps: HookDeps): Promise<HookResult> {
  const { log } = deps;
  const ctx = { domain: event.domain, event: `${event.op}/${event.subop}` };
  try {
    switch (event.op) {
      case 'prepare':
        return await prepare(event, xml, deps);
      case 'release':
        return await release(event, xml, deps);
      case 'migrate':
      case 'restore':
        return await incoming(event, xml, deps);
      case 'start':
      case 'started':
        return await scriptsOnly(event, xml, deps, true);
      default:
        // stopped, reconnect, attach and ops libvirt may add later: a failure here must never
        // reach libvirt (a failing reconnect kills the running VM).
        await scriptsOnly(event, xml, deps, false);
        return OK;
    }
  } catch (err) {
    log.error({ ...ctx, err: errorMessage(err), stack: (err as Error)?.stack }, 'hook failed');
    if (event.op === 'prepare' || event.op === 'start' || event.op === 'started') {
      return refuse(event, [errorMessage(err)]);
    }
    return OK;
  }
}

/**
 * Starts the driver control's warm-up (see DriverControl.warmUp) before the synchronous work that
 * follows (the inventory), so that they overlap. Never fails the run: a control that cannot be made
 * fails the first real use, which reports it.
 */
async function warmUpControl(deps: HookDeps, config: Config): Promise<void> {
  try {
    (await deps.control(config)).warmUp?.();
  } catch {
    // reported by the first real use
  }
}

async function prepare(event: HookEvent, xml: string, deps: HookDeps): Promise<HookResult> {
  const { log } = deps;
  const found = await domainConfig(event.domain, deps);
  if (found.kind === 'broken') return refuseBrokenConfig(event, found.first);
  if (found.kind === 'absent') return scriptsOnly(event, xml, deps, true);
  const { config, domain } = found;
  // A start of a VM with PCI devices will detach: libvirt's connection opens while we plan.
  if (domain.devices.some((d) => d.type !== 'usb')) await warmUpControl(deps, config);

  const definition = DomainXml.parse(xml);
  const stateFile = stateFileOf(deps, config);
  const [inventory, state] = await Promise.all([deps.inventory.read(), loadState(stateFile)]);
  const plan = planStart({
    domain: event.domain,
    config: domain,
    inventory,
    definition: { xml: definition, source: 'stdin' },
    records: state.records,
  });
  for (const w of plan.warnings) log.warn({ domain: event.domain }, w);
  if (!plan.ok) {
    log.warn(
      { domain: event.domain, errors: plan.errors, definitionStale: plan.definition.stale ?? false },
      'start refused by plan',
    );
    return (
      refuseStale(event, plan, { domain, inventory, records: state.records }, deps) ??
      refuse(event, plan.errors)
    );
  }
  log.info(
    { domain: event.domain, devices: plan.devices.map((d) => `${d.name}=${d.address ?? 'usb'}:${d.action}`) },
    'plan ok',
  );

  // Scripts first: they may stop a display manager that holds the GPU.
  const scripts = await runFor(event, xml, deps);
  if (!scriptsSucceeded(scripts)) return refuse(event, [scriptFailure(scripts)]);

  // The GPU's hand-over from the desktop (handover:), or the guard when the domain has none.
  const gpu = deps.handoverHost ? gpuFunctions(plan.devices, inventory) : [];
  let handover: HandoverDeps | null = null;
  if (gpu.length > 0 && deps.handoverHost) {
    const host = await deps.handoverHost(domain.handover?.timeoutMs ?? 15_000);
    if (domain.handover) {
      const snapshot = await host.probe.snapshot(gpu, {
        units: domain.handover.services,
        modules: domain.handover.modules,
      });
      const hp = planHandover(snapshot, domain.handover);
      for (const w of hp.warnings) log.warn({ domain: event.domain }, w);
      if (hp.errors.length > 0) return refuse(event, hp.errors);
      handover = handoverDeps(host, stateFile, inventory.bootId, deps);
      const out = await executeHandover(event.domain, hp.steps, handover);
      if (!out.ok) return refuse(event, out.errors);
    } else {
      const held = sessionHoldersError(await host.probe.holders(await host.probe.nodes(gpu)));
      if (held) return refuse(event, [held]);
    }
  }

  const control = await deps.control(config);
  const outcome = await executePrepare(plan, {
    control,
    stateFile,
    bootId: inventory.bootId,
    clock: deps.clock,
    log,
    timeoutMs: deps.timeoutMs,
    ...(deps.safety ? { safety: deps.safety } : {}),
    ...(deps.deadline !== undefined ? { deadline: deps.deadline } : {}),
  });
  if (!outcome.ok && handover) {
    // The devices are back with the host: give the desktop back too.
    const back = await giveBackHandover((r) => r.domain === event.domain, handover);
    if (back.failed.length > 0)
      log.error(
        { domain: event.domain, failed: back.failed },
        'hand-over not fully undone; run qemu-hook recover',
      );
  }
  return outcome.ok ? OK : refuse(event, outcome.errors);
}

function handoverDeps(
  host: HandoverHost,
  stateFile: string,
  bootId: string | null,
  deps: HookDeps,
): HandoverDeps {
  return {
    host,
    stateFile,
    bootId,
    clock: deps.clock,
    log: deps.log,
  };
}

/**
 * A stale definition cannot be fixed for the start in progress (no hook can change it), so the
 * start is refused; when the corrected definition would pass, a detached helper redefines it once
 * libvirt has let go of the domain (and, with onAddressChange: restart, starts it again).
 */
function refuseStale(
  event: HookEvent,
  plan: Plan,
  host: { domain: DomainConfig; inventory: Inventory; records: PrepareInput['records'] },
  deps: HookDeps,
): HookResult | null {
  if (!plan.definition.stale || !plan.definition.xml) return null;
  const fixed = planStart({
    domain: event.domain,
    config: host.domain,
    inventory: host.inventory,
    records: host.records,
    definition: { xml: plan.definition.xml, source: 'corrected' },
  });
  if (!fixed.ok) return null;
  const what = plan.errors
    .filter((e) => / moved |has no entry|no longer in the config/.test(e))
    .map((e) => e.replace(/: the definition is stale.*$/, '').replace(/; run qemu-hook apply$/, ''));
  const policy = host.domain.onAddressChange;
  if (policy !== 'refuse' && deps.scheduleRedefine?.(event.domain, policy === 'restart')) {
    // Said as what was scheduled: the helper has not run yet, and may still find it cannot.
    const then =
      policy === 'restart'
        ? 'the definition will be updated and the VM started again in the background'
        : 'the definition will be updated in the background, then start the VM again';
    return refuse(event, [`${what.join('; ')}; ${then}; check with qemu-hook status`]);
  }
  return refuse(event, [
    `${what.join('; ')}; run qemu-hook apply --vm ${event.domain}, then start the VM again`,
  ]);
}

/**
 * migrate/restore: the two events whose stdout replaces the XML. Print a corrected XML only when
 * our entries point at stale addresses on this host; print nothing otherwise.
 */
async function incoming(event: HookEvent, xml: string, deps: HookDeps): Promise<HookResult> {
  const scripts = await runFor(event, xml, deps);
  if (!scriptsSucceeded(scripts)) return refuse(event, [scriptFailure(scripts)]);
  const found = await domainConfig(event.domain, deps);
  if (found.kind !== 'ok') return found.kind === 'broken' ? refuseBrokenConfig(event, found.first) : OK;
  const stateFile = stateFileOf(deps, found.config);
  const [inventory, state] = await Promise.all([deps.inventory.read(), loadState(stateFile)]);
  const c = correctMovedEntries({
    domain: event.domain,
    config: found.domain,
    inventory,
    records: state.records,
    definition: { xml: DomainXml.parse(xml), source: 'stdin' },
  });
  if (c.kind === 'unchanged') return OK;
  if (c.kind === 'impossible') return refuse(event, [c.reason]);
  deps.log.info({ domain: event.domain, moves: c.moves }, `${event.op}: XML corrected for this host`);
  return { exitCode: 0, stdout: c.xml, stderr: [] };
}

async function release(event: HookEvent, xml: string, deps: HookDeps): Promise<HookResult> {
  const found = await domainConfig(event.domain, deps);
  // The config may have changed (or broken) while the VM ran: the state file alone says what to give
  // back; a valid config still says where that file is, even when it no longer names the VM.
  const config = (found.kind === 'broken' ? null : found.config) ?? defaultConfig();
  const stateFile = stateFileOf(deps, config);
  const state = await loadState(stateFile);
  const mine = state.records.filter((r) => r.domain === event.domain);
  const handedOver = handoversFor(state, event.domain).length > 0;
  if (mine.length > 0 || handedOver) {
    if (mine.length > 0) await warmUpControl(deps, config);
    // No inventory: the records say which devices, and HostSafety checks each before it is touched.
    const bootId = await deps.inventory.bootId();
    const devices = () =>
      mine.length > 0
        ? deps.control(config).then((control) =>
            executeRelease((r) => r.domain === event.domain, {
              control,
              stateFile,
              bootId,
              clock: deps.clock,
              log: deps.log,
              timeoutMs: deps.timeoutMs,
              ...(deps.safety ? { safety: deps.safety } : {}),
            }),
          )
        : Promise.resolve({ restored: [], failed: [] });
    const host = handedOver && deps.handoverHost ? await deps.handoverHost(15_000) : null;
    const out = await releaseWithHandover(
      (d) => d === event.domain,
      devices,
      host ? handoverDeps(host, stateFile, bootId, deps) : null,
    );
    const failed = releaseFailures(out);
    if (failed.length > 0)
      deps.log.error(
        { domain: event.domain, failed },
        'some devices or hand-over steps were not given back; run qemu-hook recover',
      );
  }
  await runFor(event, xml, deps);
  return OK;
}

async function scriptsOnly(
  event: HookEvent,
  xml: string,
  deps: HookDeps,
  statusMatters: boolean,
): Promise<HookResult> {
  const results = await runFor(event, xml, deps);
  if (statusMatters && !scriptsSucceeded(results)) return refuse(event, [scriptFailure(results)]);
  return OK;
}

async function runFor(event: HookEvent, xml: string, deps: HookDeps): Promise<ScriptResult[]> {
  const scripts = await findScripts(
    deps.paths.hookScriptsDir,
    event,
    // Every folder from the host's root down to a script must be root's (a rename could swap it).
    {
      trustFrom: deps.paths.root,
      ...(deps.scriptOwnerUid === undefined ? {} : { requiredUid: deps.scriptOwnerUid }),
    },
  );
  if (scripts.length === 0) return [];
  const limit = Math.min(deps.scriptTimeoutMs ?? Infinity, remaining(deps));
  const results = await runScripts(scripts, event, xml, {
    logFile: deps.scriptLog,
    ...(Number.isFinite(limit) ? { timeoutMs: Math.max(1, limit) } : {}),
  });
  for (const r of results) {
    deps.log.info(
      {
        domain: event.domain,
        event: `${event.op}/${event.subop}`,
        script: r.script.name,
        outcome: r.outcome,
        exitCode: r.exitCode,
        ms: r.durationMs,
      },
      'per-VM script',
    );
  }
  return results;
}

/** Time left before the run's deadline (Infinity without one). */
function remaining(deps: HookDeps): number {
  return deps.deadline === undefined ? Infinity : deps.deadline - deps.clock.now().getTime();
}

function scriptFailure(results: readonly ScriptResult[]): string {
  const bad = results.find((r) => r.outcome !== 'ok' && r.outcome !== 'skipped');
  return bad ? `per-VM script ${bad.script.name}: ${bad.error ?? bad.outcome}` : 'a per-VM script failed';
}

type Found =
  | { kind: 'ok'; config: Config; domain: DomainConfig }
  /** `config`: the valid config that does not name the domain; null when there is none. */
  | { kind: 'absent'; config: Config | null }
  | { kind: 'broken'; first: string };

/**
 * The domain's config entry. A problem inside `domains.<name>` refuses that domain only; a problem
 * outside any domain refuses every domain the file names (all, when it is not even YAML): a VM
 * the config does not name must still start. The file is read and parsed once per run.
 */
async function domainConfig(name: string, deps: HookDeps): Promise<Found> {
  const r = await (deps.config ?? (() => loadConfigFile(deps.paths.configFile)))();
  if (r.missing) return { kind: 'absent', config: null };
  if (r.config) {
    const domain = r.config.domains.get(name);
    if (domain) return { kind: 'ok', config: r.config, domain };
    // A problem inside this domain's own entry refuses this domain only.
    const problems = r.config.invalidDomains.get(name);
    if (!problems) return { kind: 'absent', config: r.config };
    deps.log.error({ domain: name, errors: problems }, 'config invalid for this domain');
    return { kind: 'broken', first: problems[0] ?? 'invalid' };
  }
  deps.log.error({ domain: name, errors: r.errors }, 'config invalid');
  // Unreadable YAML might name it: count that as yes.
  return r.domainNames == null || r.domainNames.includes(name)
    ? { kind: 'broken', first: r.errors[0] ?? 'invalid' }
    : { kind: 'absent', config: null };
}

function stateFileOf(deps: HookDeps, config: Config): string {
  return underRoot(deps.paths.root, config.stateFile);
}

function refuseBrokenConfig(event: HookEvent, firstProblem: string): HookResult {
  return refuse(event, [`the config is invalid (${firstProblem}); run qemu-hook check`]);
}

/** libvirt shows stderr after "Hook script execution failed: …": keep it to two plain lines. */
function refuse(event: HookEvent, errors: readonly string[]): HookResult {
  const first = `qemu-hook: ${event.domain}: ${errors[0] ?? 'refused'}`;
  const more =
    errors.length > 1
      ? [`qemu-hook: and ${errors.length - 1} more; see: qemu-hook --simulate ${event.domain} prepare`]
      : [];
  return { exitCode: 1, stdout: '', stderr: [first, ...more] };
}
