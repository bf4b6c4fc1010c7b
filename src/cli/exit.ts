import {
  ConfigError,
  HostError,
  InvariantError,
  LibvirtError,
  TrustError,
  UsageError,
  XmlError,
} from '../model/errors.js';

export const EXIT = { ok: 0, refused: 1, usage: 2 } as const;

/** One clear line (plus the config's problem list) and an exit status, for any error. */
export function reportError(err: unknown, verbose: boolean, write: (line: string) => void): number {
  if (verbose && err instanceof Error && err.stack) write(err.stack);
  if (err instanceof UsageError) {
    write(`qemu-hook: ${err.message}`);
    return EXIT.usage;
  }
  if (err instanceof ConfigError) {
    write(`qemu-hook: ${err.message}`);
    for (const p of err.problems) write(`  ${p}`);
    return EXIT.usage;
  }
  if (
    err instanceof XmlError ||
    err instanceof HostError ||
    err instanceof LibvirtError ||
    err instanceof TrustError
  ) {
    write(`qemu-hook: ${err.message}`);
    return EXIT.refused;
  }
  const kind = err instanceof InvariantError ? 'internal error (a bug in qemu-hook)' : 'unexpected error';
  write(
    `qemu-hook: ${kind}: ${err instanceof Error ? err.message : String(err)}${verbose ? '' : ' (run with --verbose for details)'}`,
  );
  return EXIT.refused;
}
