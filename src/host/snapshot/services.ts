import { errorMessage } from '../../model/errors.js';
import type { LoginSession } from '../../model/handover.js';
import type { HostPaths } from '../../model/paths.js';
import type { ServiceManager } from '../../model/ports.js';
import { SysfsHandoverProbe } from '../handover/probe.js';
import { activeOneByOne, type CapturedServices } from '../handover/replay.js';

// What the hand-over plan reads from systemd and logind, which sysfs and proc do not hold: asked
// through the plan's own probe (so the display manager, and the units of processes holding the
// GPUs, are the ones a plan would ask about), read-only, and kept for a replay of the snapshot.

export interface ServicesCapture {
  readonly captured: CapturedServices;
  /** "what: why" for each question systemd or logind did not answer. */
  readonly unreadable: readonly string[];
}

/**
 * `functions`: the PCI functions whose holders count (every display function and the functions
 * beside it: a superset of what any domain's plan hands over); `units`: the ones configured
 * (handover.services of every domain). The display manager is the unit display-manager.service
 * resolves to, as the plan finds it.
 */
export async function captureServices(
  paths: HostPaths,
  services: ServiceManager,
  functions: readonly string[],
  units: readonly string[],
): Promise<ServicesCapture> {
  const recorder = new Recorder(services);
  // The holders found are not kept here: their proc entries are in the snapshot already.
  await new SysfsHandoverProbe(paths, recorder).snapshot(functions, {
    units,
    modules: [],
  });
  const unreadable = Object.entries(recorder.unreadable);
  return {
    captured: {
      units: recorder.units,
      ...(recorder.sessionList ? { sessions: recorder.sessionList } : {}),
      ...(unreadable.length > 0 ? { unreadable: recorder.unreadable } : {}),
    },
    unreadable: unreadable.map(([what, why]) => `${what}: ${why}`),
  };
}

/** Passes the questions on and writes the answers down; refuses anything but questions. */
class Recorder implements ServiceManager {
  readonly units: Record<string, 'active' | 'inactive'> = {};
  readonly unreadable: Record<string, string> = {};
  sessionList: LoginSession[] | null = null;

  constructor(private readonly inner: ServiceManager) {}

  async isActive(unit: string): Promise<boolean> {
    try {
      const active = await this.inner.isActive(unit);
      this.units[unit] = active ? 'active' : 'inactive';
      return active;
    } catch (err) {
      this.unreadable[unit] = errorMessage(err);
      throw err;
    }
  }

  activeAmong(units: readonly string[]): Promise<ReadonlySet<string>> {
    return activeOneByOne(this, units);
  }

  async sessions(): Promise<readonly LoginSession[]> {
    try {
      this.sessionList = [...(await this.inner.sessions())];
      return this.sessionList;
    } catch (err) {
      this.unreadable['sessions'] = errorMessage(err);
      throw err;
    }
  }

  readonly stop = refuseWrite;
  readonly start = refuseWrite;
  readonly stopUserUnit = refuseWrite;
  readonly terminateSession = refuseWrite;
  readonly signal = refuseWrite;
}

async function refuseWrite(): Promise<never> {
  throw new Error('a snapshot only reads');
}
