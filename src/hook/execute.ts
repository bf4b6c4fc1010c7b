import { errorMessage } from '../model/errors.js';
import { faultPoint } from '../model/faults.js';
import { PciAddress } from '../model/pci-address.js';
import type { Plan, PlannedDevice } from '../model/plan.js';
import type { Clock, DriverControl, HostSafety } from '../model/ports.js';
import { withTimeout } from '../model/timeout.js';
import { loadState, saveState } from '../state/file.js';
import { type LockOptions, withStateLock } from '../state/lock.js';
import { recordFor, removeRecord, staleRecords, upsertRecord } from '../state/records.js';
import type { StateFile, StateRecord } from '../state/schema.js';
import { DRIVER_SETTLE_MS, driverSettled, giveBack } from './give-back.js';
import type { HookLogger } from './logger.js';

export interface ExecutorDeps {
  readonly control: DriverControl;
  readonly stateFile: string;
  readonly bootId: string | null;
  readonly clock: Clock;
  readonly log: HookLogger;
  /** Per host operation (detach, reattach, bind). */
  readonly timeoutMs: number;
  /** How long a driver may take to show up after a probe (default DRIVER_SETTLE_MS). */
  readonly settleMs?: number;
  readonly lock?: LockOptions;
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
 * Detach every device the plan says, write-ahead: the records of all of them (with their original
 * drivers) are on disk in one save before the first detach, so a crash at any point leaves
 * `release` and `recover` what they need. A record in phase `detaching` means "maybe detached":
 * giving back checks the device's driver first, so one never touched costs nothing. After the
 * detaches, one more save marks them `detached`. A failure part-way gives back everything this run
 * recorded and leaves the state file as it was.
 */
export async function executePrepare(plan: Plan, deps: ExecutorDeps): Promise<PrepareOutcome> {
  const { log } = deps;
  return withStateLock(
    deps.stateFile,
    async () => {
      const loaded = await loadState(deps.stateFile);
      let state = dropStale(loaded, deps);
      // The plan was made before the lock; another domain may have taken a device since.
      for (const d of plan.devices) {
        const held = d.address ? recordFor(state, d.address) : null;
        if (held && held.domain !== plan.domain) {
          if (state !== loaded) await saveState(deps.stateFile, state);
          return refuse([
            `${d.name}: ${d.address} is held by domain ${held.domain}; stop ${held.domain} first`,
          ]);
        }
      }
      const wanted = plan.devices.filter(
        (d): d is PlannedDevice & { address: string } => d.action === 'detach' && d.address !== null,
      );
      const recorded: StateRecord[] = [];
      for (const d of wanted) {
        const earlier = recordFor(state, d.address);
        const ids = await deps.safety?.ids(PciAddress.parse(d.address));
        recorded.push({
          domain: plan.domain,
          address: d.address,
          // A record of ours from this boot (a start that failed later) already knows the real original.
          originalDriver: earlier ? earlier.originalDriver : (d.originalDriver ?? d.driver),
          bootId: deps.bootId,
          phase: 'detaching',
          since: deps.clock.now().toISOString(),
          entry: d.name,
          ...(ids ? { vendor: ids.vendor, device: ids.device } : {}),
        });
      }
      for (const r of recorded) state = upsertRecord(state, r);
      if (state !== loaded) await saveState(deps.stateFile, state);
      if (recorded.length === 0) return { ok: true, errors: [], detached: [] };
      faultPoint('record');
      for (const [i, d] of wanted.entries()) {
        const record = recorded[i]!;
        if (deps.deadline !== undefined && deps.clock.now().getTime() > deps.deadline) {
          log.error({ domain: plan.domain, address: d.address }, 'deadline passed; rolling back');
          await rollback(recorded, state, deps);
          return refuse([
            'the start took longer than its time limit (limits.hookSeconds in the config); what it took was given back',
          ]);
        }
        const detachStart = Date.now();
        try {
          await withTimeout(
            deps.control.detach(PciAddress.parse(d.address)),
            deps.timeoutMs,
            `detach of ${d.address}`,
          );
          const now = await driverSettled(
            deps.control,
            PciAddress.parse(d.address),
            'vfio-pci',
            deps.settleMs ?? DRIVER_SETTLE_MS,
          );
          if (now !== 'vfio-pci')
            throw new Error(`${d.address} is on ${now ?? 'no driver'} after detach, not vfio-pci`);
        } catch (err) {
          const why = `${d.name}: detaching ${d.address} from ${record.originalDriver ?? 'no driver'} failed: ${errorMessage(err)}`;
          log.error(
            { domain: plan.domain, address: d.address, err: errorMessage(err) },
            'detach failed; rolling back',
          );
          // Those not tried yet are on their drivers still: giving them back only drops their records.
          await rollback(recorded, state, deps);
          return refuse([why]);
        }
        log.info(
          {
            domain: plan.domain,
            address: d.address,
            originalDriver: record.originalDriver,
            ms: Date.now() - detachStart,
          },
          'detached to vfio-pci',
        );
        faultPoint('detach');
      }
      const since = deps.clock.now().toISOString();
      for (const r of recorded) state = upsertRecord(state, { ...r, phase: 'detached', since });
      await saveState(deps.stateFile, state);
      return { ok: true, errors: [], detached: recorded.map((r) => r.address) };
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
 * Give back every device whose record `select` picks (this boot's only: earlier boots' are
 * dropped). A record goes only once its device is verified on its original driver, in one save
 * after all of them: a crash before it leaves records of devices already back, which the next
 * release or recover finds on their drivers and drops. Failures stay for `recover`.
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
      const mine = state.records.filter(select);
      const restored: { address: string; driver: string | null }[] = [];
      const failed: { address: string; error: string }[] = [];
      for (const r of mine) {
        const now = await driverNow(deps, r);
        // Already on its original driver (a hand-over's module reload probed it, or an earlier run
        // gave it back and died before its save): nothing will be done to it, so nothing to check.
        if (isBack(r, now)) {
          state = removeRecord(state, r.address);
          restored.push({ address: r.address, driver: r.originalDriver });
          deps.log.info(
            { domain: r.domain, address: r.address, driver: r.originalDriver },
            'already on its original driver; record dropped',
          );
          continue;
        }
        const unsafe = await releaseRefusal(deps.safety, r);
        if (unsafe) {
          failed.push({ address: r.address, error: unsafe });
          deps.log.error(
            { domain: r.domain, address: r.address, err: unsafe },
            'device left alone; record kept for qemu-hook recover',
          );
          continue;
        }
        const giveBackStart = Date.now();
        const res = await giveBack(
          deps.control,
          r.address,
          r.originalDriver,
          deps.timeoutMs,
          deps.settleMs,
          now,
        );
        if (res.ok) {
          state = removeRecord(state, r.address);
          restored.push({ address: r.address, driver: res.driver });
          deps.log.info(
            {
              domain: r.domain,
              address: r.address,
              driver: res.driver,
              steps: res.steps,
              ms: Date.now() - giveBackStart,
            },
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
      if (state !== loaded) await saveState(deps.stateFile, state);
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
    const unsafe = isBack(r, await driverNow(deps, r)) ? null : await releaseRefusal(deps.safety, r);
    if (unsafe) failed.push({ address: r.address, error: unsafe });
    else restored.push({ address: r.address, driver: r.originalDriver });
  }
  return { restored, failed };
}

/** The driver bound to the recorded device now; undefined when it cannot be read (the give-back reads it again and says why). */
async function driverNow(deps: ExecutorDeps, r: StateRecord): Promise<string | null | undefined> {
  try {
    return await withTimeout(
      deps.control.currentDriver(PciAddress.parse(r.address)),
      deps.timeoutMs,
      `read driver of ${r.address}`,
    );
  } catch {
    return undefined;
  }
}

/** On the driver its record names (not vfio-pci): giving it back would touch nothing. */
function isBack(r: StateRecord, now: string | null | undefined): boolean {
  return now !== undefined && now === r.originalDriver && now !== 'vfio-pci';
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
    const res = await giveBack(deps.control, r.address, r.originalDriver, deps.timeoutMs, deps.settleMs);
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
