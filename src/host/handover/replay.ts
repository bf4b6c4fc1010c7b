import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../../model/errors.js';
import type { LoginSession } from '../../model/handover.js';
import type { KernelWriter, ServiceManager } from '../../model/ports.js';
import { SNAPSHOT_SERVICES_FILE } from '../root-kind.js';

// The hand-over's host on a snapshot of a real host (a --root with no simulated kernel): sysfs and
// proc are the captured ones, systemd and logind answer from what `snapshot` read of them, and
// nothing is ever written. The commands that write refuse such a root before they get here
// (cli/wiring.ts); the writes below refuse again, should one slip through.

/** What `snapshot` read from systemd and logind: the fixture's services.json shape, plus what could not be read. */
export interface CapturedServices {
  /** Unit → its state when the snapshot was taken. */
  readonly units: Readonly<Record<string, 'active' | 'inactive'>>;
  /** Absent when logind could not be read. */
  readonly sessions?: readonly LoginSession[];
  /** Unit (or "sessions") → why it could not be read. */
  readonly unreadable?: Readonly<Record<string, string>>;
}

export function readCapturedServices(root: string): CapturedServices | null {
  let text: string;
  try {
    text = readFileSync(join(root, SNAPSHOT_SERVICES_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const parsed = JSON.parse(text) as Partial<CapturedServices>;
    if (parsed && typeof parsed.units === 'object' && parsed.units !== null)
      return parsed as CapturedServices;
  } catch {
    // unreadable: as if absent, said by the errors below
  }
  return null;
}

const READ_ONLY =
  'a snapshot is for reading (devices, check, --simulate, status): run this on the host it was taken from';

/** systemd and logind as the snapshot saw them; an unit it did not read is unknown, never guessed. */
export class ReplayServiceManager implements ServiceManager {
  private readonly captured: CapturedServices | null;

  constructor(root: string) {
    this.captured = readCapturedServices(root);
  }

  async isActive(unit: string): Promise<boolean> {
    const c = this.require();
    const state = c.units[unit];
    if (state) return state === 'active';
    const why = c.unreadable?.[unit];
    throw new Error(why ? `the snapshot could not read it (${why})` : 'the snapshot did not record it');
  }

  activeAmong(units: readonly string[]): Promise<ReadonlySet<string>> {
    return activeOneByOne(this, units);
  }

  async sessions(): Promise<readonly LoginSession[]> {
    const c = this.require();
    if (c.sessions) return c.sessions;
    const why = c.unreadable?.['sessions'];
    throw new Error(`the snapshot could not read logind${why ? ` (${why})` : ''}`);
  }

  readonly stop = refuseWrite;
  readonly start = refuseWrite;
  readonly stopUserUnit = refuseWrite;
  readonly terminateSession = refuseWrite;
  readonly signal = refuseWrite;

  private require(): CapturedServices {
    if (this.captured) return this.captured;
    throw new Error(
      `systemd and logind were not captured (no ${SNAPSHOT_SERVICES_FILE}: a snapshot by an older qemu-hook, or a folder made by hand)`,
    );
  }
}

/** activeAmong for a manager that answers unit by unit: the first unit it cannot answer fails it all. */
export async function activeOneByOne(
  manager: Pick<ServiceManager, 'isActive'>,
  units: readonly string[],
): Promise<ReadonlySet<string>> {
  const active = new Set<string>();
  for (const u of units) if (await manager.isActive(u)) active.add(u);
  return active;
}

/** Every write to a snapshot's services or kernel: refused, with the one line that says why. */
async function refuseWrite(): Promise<never> {
  throw new UsageError(READ_ONLY);
}

/** The kernel of a snapshot: it has none to write to. */
export class ReadOnlyKernel implements KernelWriter {
  readonly bindVtcon = refuseWrite;
  readonly unbindPlatform = refuseWrite;
  readonly bindPlatform = refuseWrite;
  readonly unloadModule = refuseWrite;
  readonly loadModule = refuseWrite;
}
