// Few error classes, by audience. The CLI maps each to one line and an exit status.

/** The user asked for something malformed (argv, a value in the config): exit 2, one line, no stack. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The configuration file fails validation; `problems` holds every problem, each with its path. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly problems: readonly string[],
  ) {
    super(message);
  }
}

/** Reading or writing the host failed: names the operation, the path and the errno. */
export class HostError extends Error {
  override readonly name = 'HostError';
  constructor(
    readonly operation: string,
    readonly path: string,
    readonly code: string | undefined,
    detail?: string,
    options?: { cause?: unknown },
  ) {
    super(`${operation} ${path}: ${detail ?? code ?? 'failed'}`, options);
  }

  static from(operation: string, path: string, err: unknown): HostError {
    const e = err as NodeJS.ErrnoException;
    return new HostError(operation, path, e?.code, e?.code ?? String(e?.message ?? err), { cause: err });
  }
}

/** A libvirt call failed; code/domain are libvirt's numbers (virErrorNumber / virErrorDomain). */
export class LibvirtError extends Error {
  override readonly name = 'LibvirtError';
  constructor(
    message: string,
    readonly code: number,
    readonly domain: number,
    readonly operation: string,
  ) {
    super(message);
  }
}

/** A domain definition (XML) cannot be understood. */
export class XmlError extends Error {
  override readonly name = 'XmlError';
}

/** Something that must never happen did: a bug in qemu-hook, reported as such. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A file or folder that decides what root does is not safe (owner, mode): one line with the fix. */
export class TrustError extends Error {
  override readonly name = 'TrustError';
}
