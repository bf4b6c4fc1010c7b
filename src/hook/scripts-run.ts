import type { ChildProcess } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HostError } from '../model/errors.js';
import type { HookEvent } from '../model/hook-event.js';
import { childProcess } from '../model/lazy-builtins.js';
import type { Script, ScriptResult } from './scripts.js';

export interface RunOptions {
  /** Scripts' stdout and stderr are appended here: never libvirt's pipes (see runScripts). */
  readonly logFile: string;
  /** Stop a script (its whole process group) after this long; none by default, like libvirt. */
  readonly timeoutMs?: number;
  /** After SIGTERM on timeout, how long before SIGKILL. */
  readonly killGraceMs?: number;
  /** The scripts' environment; inherited when absent (in hook mode: libvirt's LC_ALL, PATH, HOME, USER). */
  readonly env?: NodeJS.ProcessEnv;
}

const DEFAULT_KILL_GRACE_MS = 3_000;

/**
 * Runs the scripts in order with the hook's argv and the domain XML on stdin, stopping at the
 * first one that is refused, fails or cannot start. Skipped scripts are reported, not run.
 *
 * libvirt reads the hook's stdout and stderr until EOF, so a script's background child holding
 * them would stall the VM start forever. Scripts therefore get the log file as stdout/stderr,
 * run in a session of their own, and we wait for the script itself to exit, not for its
 * children or its output to close.
 */
export async function runScripts(
  scripts: readonly Script[],
  event: HookEvent,
  xml: string,
  options: RunOptions,
): Promise<ScriptResult[]> {
  const results: ScriptResult[] = [];
  let log: Awaited<ReturnType<typeof open>> | null = null;
  try {
    for (const script of scripts) {
      if (script.verdict === 'skip') {
        results.push(notRun(script, 'skipped', null));
        continue;
      }
      if (script.verdict === 'refuse') {
        results.push(notRun(script, 'refused', `refused to run ${script.path}: ${script.reason}`));
        break;
      }
      log ??= await openLog(options.logFile);
      const result = await runOne(script, event, xml, log.fd, options);
      results.push(result);
      if (result.outcome !== 'ok') break;
    }
  } finally {
    await log?.close();
  }
  return results;
}

function notRun(script: Script, outcome: 'skipped' | 'refused', error: string | null): ScriptResult {
  return { script, outcome, exitCode: null, signal: null, pid: null, durationMs: 0, error };
}

async function openLog(path: string): Promise<Awaited<ReturnType<typeof open>>> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    return await open(path, 'a', 0o640);
  } catch (err) {
    throw HostError.from('open the per-VM script log', path, err);
  }
}

function runOne(script: Script, event: HookEvent, xml: string, logFd: number, options: RunOptions) {
  return new Promise<ScriptResult>((resolve) => {
    const started = performance.now();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let child: ChildProcess;

    const finish = (fields: Pick<ScriptResult, 'outcome' | 'exitCode' | 'signal' | 'error'>) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      child?.stdin?.destroy();
      resolve({ script, pid: child?.pid ?? null, durationMs: performance.now() - started, ...fields });
    };

    try {
      child = childProcess().spawn(script.path, [event.domain, event.op, event.subop, event.extra], {
        stdio: ['pipe', logFd, logFd],
        detached: true,
        env: options.env,
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      finish({
        outcome: 'error',
        exitCode: null,
        signal: null,
        error: `could not run ${script.path}: ${e.code ?? e.message}`,
      });
      return;
    }

    child.once('error', (err: NodeJS.ErrnoException) => {
      finish({
        outcome: 'error',
        exitCode: null,
        signal: null,
        error: `could not run ${script.path}: ${err.code ?? err.message}`,
      });
    });
    child.once('exit', (code, signal) => {
      if (timedOut) {
        killGroup(child.pid, 'SIGKILL'); // whatever it left behind goes too
        const s = Math.round((options.timeoutMs ?? 0) / 100) / 10;
        finish({
          outcome: 'timeout',
          exitCode: code,
          signal,
          error: `${script.path} did not finish within ${s} s and was stopped`,
        });
      } else if (code === 0) {
        finish({ outcome: 'ok', exitCode: 0, signal: null, error: null });
      } else {
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        finish({ outcome: 'failed', exitCode: code, signal, error: `${script.path} ${how}` });
      }
    });

    // A script need not read its stdin; EPIPE is then expected.
    child.stdin?.on('error', () => {});
    child.stdin?.end(xml);

    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        killGroup(child.pid, 'SIGTERM');
        killTimer = setTimeout(
          () => killGroup(child.pid, 'SIGKILL'),
          options.killGraceMs ?? DEFAULT_KILL_GRACE_MS,
        );
      }, options.timeoutMs);
    }
  });
}

/** The script leads its own process group (detached), so -pid reaches everything it started. */
function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
