// Per-VM scripts in the VFIO-Tools layout: `<hooksDir>/<vm>/<op>/<subop>/` (every executable
// regular file, in byte order of name) or `<hooksDir>/<vm>/<op>/<subop>` as one file.
// Discovery (with the security verdicts) is pure reading; running is separate so that
// `--simulate` can list what would run.

export type ScriptVerdict = 'run' | 'skip' | 'refuse';

export interface Script {
  /** Where it was found, symbolic links not resolved. */
  readonly path: string;
  /** The path below the hooks folder, for logs: "win11/prepare/begin/10-stop-dm". */
  readonly name: string;
  /** `skip`: not executable (or a broken link), silently not run; `refuse`: unsafe, fails the run. */
  readonly verdict: ScriptVerdict;
  /** Why it is skipped or refused; null when it runs. */
  readonly reason: string | null;
  /** Who must own it and every folder from `from` down to it: checked again on the open file before it runs. */
  readonly trust?: { readonly uid: number; readonly from: string };
}

export type ScriptOutcome = 'ok' | 'skipped' | 'refused' | 'failed' | 'timeout' | 'error';

export interface ScriptResult {
  readonly script: Script;
  readonly outcome: ScriptOutcome;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** The script's pid, which is also its process group id (it runs in its own session). */
  readonly pid: number | null;
  readonly durationMs: number;
  /** What went wrong in plain words; null when ok or skipped. */
  readonly error: string | null;
}

export function scriptsSucceeded(results: readonly ScriptResult[]): boolean {
  return results.every((r) => r.outcome === 'ok' || r.outcome === 'skipped');
}

export { type FindOptions, findScripts } from './scripts-find.js';
export { type RunOptions, runScripts } from './scripts-run.js';
