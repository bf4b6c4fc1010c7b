import { errorMessage } from '../model/errors.js';
import { PciAddress } from '../model/pci-address.js';
import type { Plan, PlannedDevice } from '../model/plan.js';
import type { Clock, DriverControl, HostSafety } from '../model/ports.js';
import { withTimeout } from '../model/timeout.js';
import { loadState, saveState } from '../state/file.js';
import { type LockOptions, withStateLock } from '../state/lock.js';
import { recordFor, removeRecord, staleRecords, upsertRecord } from '../state/records.js';
import type { StateFile, StateRecord } from '../state/schema.js';
import { type FaultPoint, noFaults } from './faults.js';
import { giveBack } from './give-back.js';
import type { HookLogger } from './logger.js';

export interface ExecutorDeps {
  readonly control: DriverControl;
  readonly stateFile: string;
  readonly bootId: string | null;
  readonly clock: Clock;
  readonly log: HookLogger;
  /** Per host operation (detach, reattach, bind). */
  readonly timeoutMs: number;
  readonly lock?: LockOptions;
  /** Crash-injection points for tests (see faults.ts). */
  readonly faults?: (point: FaultPoint) => void;
  /** Host checks on each record: ids recorded at detach, protection re-checked before a give-back. */
  readonly safety?: HostSafety;
  /** The hook run's deadline (ms since the epoch, by `clock`): past it a prepare gives back what it took and refuses. */
  readonly deadline?: number;
}

export interface PrepareOutcome {
  readonly ok: boolean;
  readonly errors: readonly string[];
  /** Addresses detached by this run and still detached. */
  readonly detached: readonly string[];
}

/**
 * Detach every device the plan says, write-ahead: the record (with the original driver) is on disk
 * before the detach starts, so a crash at any point leaves `recover` what it needs. A failure
 * part-way gives back what this run detached and leaves the state file true.
 */
export async function executePrepare(plan: Plan, deps: ExecutorDeps): Promise<PrepareOutcome> {
  const { log } = deps;
  const fault = deps.faults ?? noFaults;
  return withStateLock(
    deps.stateFile,
    async () => {
      const loaded = await loadState(deps.stateFile);
      let state = dropStale(loaded, deps);
      if (state !== loaded) await saveState(deps.stateFile, state);
      // The plan was made before the lock; another domain may have taken a device since.
      for (const d of plan.devices) {
        const held = d.address ? recordFor(state, d.address) : null;
        if (held && held.domain !== plan.domain) {
          return refuse([
            `${d.name}: ${d.address} is held by domain ${held.domain}; stop ${held.domain} first`,
          ]);
        }
      }
      const taken: StateRecord[] = [];
      for (const d of plan.devices) {
        if (d.action !== 'detach' || !d.address) continue;
        if (deps.deadline !== undefined && deps.clock.now().getTime() > deps.deadline) {
          log.error({ domain: plan.domain, address: d.address }, 'deadline passed; rolling back');
          state = await rollback(taken, state, deps);
          return refuse([
            'the start took longer than its time limit (limits.hookSeconds in the config); what it took was given back',
          ]);
        }
        const earlier = recordFor(state, d.address);
        const ids = await deps.safety?.ids(PciAddress.parse(d.address));
        const record: StateRecord = {
          domain: plan.domain,
          address: d.address,
          // A record of ours from this boot (a start that failed later) already knows the real original.
          originalDriver: earlier ? earlier.originalDriver : (d.originalDriver ?? d.driver),
          bootId: deps.bootId,
          phase: 'detaching',
          since: deps.clock.now().toISOString(),
          entry: d.name,
          ...(ids ? { vendor: ids.vendor, device: ids.device } : {}),
        };
        state = upsertRecord(state, record);
        await saveState(deps.stateFile, state);
        fault('record');
        try {
          await withTimeout(
            deps.control.detach(PciAddress.parse(d.address)),
            deps.timeoutMs,
            `detach of ${d.address}`,
          );
          const now = await deps.control.currentDriver(PciAddress.parse(d.address));
          if (now !== 'vfio-pci')
            throw new Error(`${d.address} is on ${now ?? 'no driver'} after detach, not vfio-pci`);
        } catch (err) {
          const why = `${d.name}: detaching ${d.address} from ${record.originalDriver ?? 'no driver'} failed: ${errorMessage(err)}`;
          log.error(
            { domain: plan.domain, address: d.address, err: errorMessage(err) },
            'detach failed; rolling back',
          );
          state = await rollback([...taken, record], state, deps);
          return refuse([why]);
        }
        const done: StateRecord = { ...record, phase: 'detached', since: deps.clock.now().toISOString() };
        state = upsertRecord(state, done);
        await saveState(deps.stateFile, state);
        taken.push(done);
        log.info(
          { domain: plan.domain, address: d.address, originalDriver: done.originalDriver },
          'detached to vfio-pci',
        );
        fault('detach');
      }
      return { ok: true, errors: [], detached: taken.map((r) => r.address) };
    },
    { bootId: deps.bootId, ...deps.lock },
  );
}

export interface ReleaseOutcome {
  readonly restored: readonly { address: string; driver: string | null }[];
  /** Records kept for `recover`, with why. */
  readonly failed: readonly { address: string; error: string }[];
}

/**
 * Give back every device whose record `select` picks (this boot's only: earlier boots' are dropped). A record goes only once its device is
 * verified on its original driver; failures stay for `recover`.
 */
export async function executeRelease(
  select: (record: StateRecord) => boolean,
  deps: ExecutorDeps,
  options: { dryRun?: boolean } = {},
): Promise<ReleaseOutcome> {
  if (options.dryRun) return releaseDryRun(select, deps);
  return withStateLock(
    deps.stateFile,
    async () => {
      const loaded = await loadState(deps.stateFile);
      let state = dropStale(loaded, deps, options.dryRun);
      if (state !== loaded) await saveState(deps.stateFile, state);
      const mine = state.records.filter(select);
      const restored: { address: string; driver: string | null }[] = [];
      const failed: { address: string; error: string }[] = [];
      for (const r of mine) {
        const unsafe = await releaseRefusal(deps.safety, r);
        if (unsafe) {
          failed.push({ address: r.address, error: unsafe });
          deps.log.error(
            { domain: r.domain, address: r.address, err: unsafe },
            'device left alone; record kept for qemu-hook recover',
          );
          continue;
        }
        const res = await giveBack(deps.control, r.address, r.originalDriver, deps.timeoutMs);
        if (res.ok) {
          state = removeRecord(state, r.address);
          await saveState(deps.stateFile, state);
          restored.push({ address: r.address, driver: res.driver });
          deps.log.info(
            { domain: r.domain, address: r.address, driver: res.driver, steps: res.steps },
            'given back to original driver',
          );
        } else {
          failed.push({ address: r.address, error: res.error ?? 'unknown' });
          deps.log.error(
            { domain: r.domain, address: r.address, err: res.error, steps: res.steps },
            'give-back failed; record kept for qemu-hook recover',
          );
        }
      }
      return { restored, failed };
    },
    { bootId: deps.bootId, ...deps.lock },
  );
}

/** What release would do, read only: no lock taken, a corrupt state file left where it is. */
async function releaseDryRun(
  select: (record: StateRecord) => boolean,
  deps: ExecutorDeps,
): Promise<ReleaseOutcome> {
  const state = await loadState(deps.stateFile, { readOnly: true });
  const current = state.records.filter((r) => !staleRecords(state, deps.bootId).includes(r));
  const restored: { address: string; driver: string | null }[] = [];
  const failed: { address: string; error: string }[] = [];
  for (const r of current.filter(select)) {
    const unsafe = await releaseRefusal(deps.safety, r);
    if (unsafe) failed.push({ address: r.address, error: unsafe });
    else restored.push({ address: r.address, driver: r.originalDriver });
  }
  return { restored, failed };
}

/**
 * Why a recorded device must not be given back or rebound now: the host uses it (its disk holds a
 * mounted filesystem, it carries the default route, it drives the console), or another device sits
 * at the address (its ids differ from the record). Old records without ids pass on ids: refusing
 * them would strand every device detached before the upgrade on vfio-pci.
 */
async function releaseRefusal(safety: HostSafety | undefined, r: StateRecord): Promise<string | null> {
  if (!safety) return null;
  const address = PciAddress.parse(r.address);
  try {
    const why = await safety.protection(address);
    if (why)
      return `${r.address} left alone: ${why}; the record says ${r.domain} took it, which cannot be right`;
    if (r.vendor && r.device) {
      const now = await safety.ids(address);
      if (now && (now.vendor !== r.vendor || now.device !== r.device))
        return `${r.address} left alone: it is a ${now.vendor}:${now.device} now, the record was made for a ${r.vendor}:${r.device}`;
    }
    return null;
  } catch (err) {
    return `${r.address} left alone: cannot check it against the host (${errorMessage(err)})`;
  }
}

async function rollback(
  records: readonly StateRecord[],
  state: StateFile,
  deps: ExecutorDeps,
): Promise<StateFile> {
  let s = state;
  for (const r of [...records].reverse()) {
    const res = await giveBack(deps.control, r.address, r.originalDriver, deps.timeoutMs);
    if (res.ok) {
      s = removeRecord(s, r.address);
      deps.log.info(
        { domain: r.domain, address: r.address, driver: res.driver },
        'rolled back to original driver',
      );
    } else {
      deps.log.error(
        { domain: r.domain, address: r.address, err: res.error },
        'rollback failed; record kept for qemu-hook recover',
      );
    }
  }
  await saveState(deps.stateFile, s);
  return s;
}

/** Records from an earlier boot describe devices the reboot already gave back: drop them, logged. */
function dropStale(state: StateFile, deps: ExecutorDeps, keep = false): StateFile {
  const stale = staleRecords(state, deps.bootId);
  if (stale.length === 0 || keep) return state;
  for (const r of stale)
    deps.log.warn(
      { domain: r.domain, address: r.address, bootId: r.bootId },
      'dropping state record from an earlier boot',
    );
  return { ...state, records: state.records.filter((r) => !stale.includes(r)) };
}

function refuse(errors: string[]): PrepareOutcome {
  return { ok: false, errors, detached: [] };
}

export type { PlannedDevice };
