/**
 * Fault injection, for the lab and the reliability suite: every step that changes the host or the
 * state file is a named point, and a test can make the program die there (SIGKILL, as a power cut
 * or an OOM kill would), or make a write fail (ENOSPC, EIO) or stop half-way (torn).
 *
 * The switch is process-wide and installed once by `cli` (from a root-owned file: libvirt clears
 * the environment of the hook). It crosses every layer (state saves, the lock, driver calls,
 * definitions), and threading a test-only parameter through each of their signatures would cost
 * more than it says; without a switch every point is a no-op.
 *
 * Adding a point: one name here (in the order a run meets it) and one `faultPoint('name')` call.
 */
export const FAULT_POINTS = [
  /** The state lock file is created but still empty (its holder not written yet). */
  'lock-create',
  /** The state lock is held. */
  'lock',
  /** A state save is writing its temp file (torn: half of it is written). */
  'state-write',
  /** A state save's temp file is complete and synced, not yet renamed over the state file. */
  'state-rename',
  /** A state save is in place. */
  'state-saved',
  /** prepare: the write-ahead records are on disk, no device touched yet. */
  'record',
  /** prepare: a device was detached to vfio-pci. */
  'detach',
  /** release, recover, rollback: a device was reattached (the kernel picked its driver). */
  'reattach',
  /** release, recover, rollback: a device was bound to its recorded driver. */
  'bind',
  /** release, recover, rollback: a device that had no driver was unbound. */
  'unbind',
  /** apply, the redefine helper: a definition's temp file is being written (torn: half of it). */
  'define-write',
  /** apply, the redefine helper: a definition was replaced. */
  'define',
  /** The redefine helper holds its pid file. */
  'redefine-claim',
  // Single-GPU hand-over (hook/handover.ts), per step kind: its write-ahead record is on disk
  // (nothing done yet); it acted and was verified (not yet marked done); its give-back was verified
  // (its record not yet dropped).
  ...handoverPoints('handover-record-'),
  ...handoverPoints('handover-'),
  ...handoverPoints('handover-giveback-'),
] as const;

function handoverPoints<P extends string>(prefix: P) {
  return [
    `${prefix}stop-service`,
    `${prefix}end-session`,
    `${prefix}wait-holders`,
    `${prefix}unbind-vtcon`,
    `${prefix}release-firmware-fb`,
    `${prefix}unload-module`,
  ] as const;
}

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** kill: SIGKILL at the point; enospc/eio: the operation fails with that errno; torn: half written, then SIGKILL. */
export type FaultMode = 'kill' | 'enospc' | 'eio' | 'torn';

export type FaultSwitch = (point: FaultPoint, partialWrite?: () => void) => void;

let installed: FaultSwitch | null = null;

/** cli only: install the switch for this process (null removes it). */
export function installFaults(faults: FaultSwitch | null): void {
  installed = faults;
}

/**
 * A step of a write. `partialWrite`, where the step writes a file, writes half of it: it is called
 * for the torn, enospc and eio modes before the process dies or the error is thrown.
 */
export function faultPoint(point: FaultPoint, partialWrite?: () => void): void {
  installed?.(point, partialWrite);
}

export function isFaultPoint(name: string): name is FaultPoint {
  return (FAULT_POINTS as readonly string[]).includes(name);
}

/** The hand-over's points, for suites that crash at each in turn. */
export const HANDOVER_FAULT_POINTS: readonly FaultPoint[] = FAULT_POINTS.filter((p) =>
  p.startsWith('handover-'),
);
