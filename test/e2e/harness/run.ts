import { execFile } from 'node:child_process';

export interface RunResult {
  /** Exit code; -1 when the process was killed by a signal or could not be started. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Minimal, fixed environment: libvirt tools behave the same whatever the test runner's env holds. */
export const TOOL_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LC_ALL: 'C',
  HOME: '/root',
};

/** Runs a program to completion; never rejects on a non-zero exit (callers assert on `code`). */
export function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      [...args],
      { env: { ...TOOL_ENV }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        let code = 0;
        if (error) code = typeof error.code === 'number' ? error.code : -1;
        const why = error && typeof error.code !== 'number' ? `${error.message}\n` : '';
        resolve({ code, stdout: String(stdout), stderr: why + String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}
