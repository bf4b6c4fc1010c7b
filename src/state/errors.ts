import { HostError } from '../model/errors.js';

// Both are HostErrors (the CLI reports operation + path); the subclasses carry what `status`
// and `recover` need to tell the user where to look.

/** The state file exists but cannot be trusted. It has been moved aside, never emptied. */
export class StateCorruptError extends HostError {
  constructor(
    path: string,
    /** Where the bad file now is; null when it could not be moved aside. */
    readonly keptAt: string | null,
    readonly problem: string,
    options?: { cause?: unknown; readOnly?: boolean },
  ) {
    super(
      'read state file',
      path,
      'ECORRUPT',
      corruptDetail(path, keptAt, problem, options?.readOnly),
      options,
    );
  }
}

function corruptDetail(path: string, keptAt: string | null, problem: string, readOnly = false): string {
  const where = readOnly
    ? 'left as it is (this command changes nothing; qemu-hook status keeps it aside)'
    : keptAt
      ? `kept it as ${keptAt}`
      : `could not move it aside, it is still at ${path}; move it away by hand`;
  return (
    `the state file is corrupt (${problem}); ${where}. ` +
    'It may list devices still detached from the host: inspect it, check `qemu-hook status` ' +
    'and `qemu-hook recover --dry-run`, then give devices back with `qemu-hook recover`.'
  );
}

/** The state file was written by a newer qemu-hook: left untouched. */
export class StateVersionError extends HostError {
  constructor(
    path: string,
    readonly version: unknown,
  ) {
    super(
      'read state file',
      path,
      'EVERSION',
      `version ${JSON.stringify(version)} is not supported by this qemu-hook; ` +
        'it was left untouched: upgrade qemu-hook or inspect the file',
    );
  }
}

/** Another process holds the state lock for longer than we were willing to wait. */
export class StateLockError extends HostError {
  constructor(
    lockPath: string,
    readonly holderPid: number | null,
    detail: string,
  ) {
    super('lock state file', lockPath, 'ETIMEDOUT', detail);
  }
}
