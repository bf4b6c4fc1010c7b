import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

export interface HookCall {
  readonly domain: string;
  readonly op: string;
  readonly subop: string;
  readonly extra: string;
  /** First line of the XML libvirt wrote to the hook's stdin. */
  readonly firstLine: string;
}

function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * A stand-in /etc/libvirt/hooks/qemu: appends one line per call (argv, a tab, the first line of
 * stdin) to `logFile`. With `refusePrepare`, it fails `prepare begin` of that domain the way the
 * real hook refuses: exit 1 and the message on stderr.
 */
export function recordingHookScript(
  logFile: string,
  opts: { refusePrepare?: { domain: string; stderr: string } } = {},
): string {
  const refuse = opts.refusePrepare
    ? `if [ "$1" = ${shQuote(opts.refusePrepare.domain)} ] && [ "$2 $3" = 'prepare begin' ]; then
  printf '%s\\n' ${shQuote(opts.refusePrepare.stderr)} >&2
  exit 1
fi
`
    : '';
  return `#!/bin/sh
IFS= read -r first || true
printf '%s\\t%s\\n' "$*" "$first" >> ${shQuote(logFile)}
${refuse}exit 0
`;
}

/** Replaces a hook script atomically: libvirt may run it at any moment. */
export function writeHookScript(path: string, script: string): void {
  writeFileSync(`${path}.new`, script, { mode: 0o755 });
  renameSync(`${path}.new`, path);
}

export function readHookCalls(logFile: string): HookCall[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [argv = '', firstLine = ''] = line.split('\t');
      const [domain = '', op = '', subop = '', extra = ''] = argv.split(' ');
      return { domain, op, subop, extra, firstLine };
    });
}

/** "op subop" of each call for one domain, in order. */
export function eventsOf(calls: readonly HookCall[], domain: string): string[] {
  return calls.filter((c) => c.domain === domain).map((c) => `${c.op} ${c.subop}`);
}
