import type { ChildProcess } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, realpathSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HostError } from '../model/errors.js';
import type { HookEvent } from '../model/hook-event.js';
import { childProcess } from '../model/lazy-builtins.js';
import type { Script, ScriptResult } from './scripts.js';
import { foldersUpTo, unsafeFolderStat } from './scripts-find.js';

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
    // Root appends here: never through a link planted in the log's place.
    return await open(
      path,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o640,
    );
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

    let scriptFd: number | null = null;
    try {
      scriptFd = openChecked(script);
      // Run the file we checked, through its descriptor (child fd 3, without close-on-exec, so an
      // interpreter can open /proc/self/fd/3 too): a rename in a parent folder cannot swap it now.
      child = childProcess().spawn('/proc/self/fd/3', [event.domain, event.op, event.subop, event.extra], {
        stdio: ['pipe', logFd, logFd, scriptFd],
        detached: true,
        // $0 of a script run this way is /proc/self/fd/3: its own path is in QEMU_HOOK_SCRIPT.
        env: { ...(options.env ?? process.env), QEMU_HOOK_SCRIPT: script.path },
        argv0: script.path,
      });
    } catch (err) {
      if (scriptFd !== null) closeSync(scriptFd);
      if (err instanceof ScriptChanged) {
        finish({
          outcome: 'refused',
          exitCode: null,
          signal: null,
          error: `refused to run ${script.path}: ${err.message}`,
        });
        return;
      }
      const e = err as NodeJS.ErrnoException;
      finish({
        outcome: 'error',
        exitCode: null,
        signal: null,
        error: `could not run ${script.path}: ${e.code ?? e.message}`,
      });
      return;
    }

    closeSync(scriptFd);
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

class ScriptChanged extends Error {}

/**
 * Opens the script as it is now, without following a link at the last step, and checks the open
 * file and every folder above its real path again (owner, mode): what runs is what was checked.
 */
function openChecked(script: Script): number {
  const trust = script.trust ?? { uid: 0, from: '/' };
  let real: string;
  let fd: number;
  try {
    real = realpathSync(script.path);
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new ScriptChanged(`cannot open it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const st = fstatSync(fd);
    let problem: string | null = null;
    if (!st.isFile()) problem = 'it is no longer a regular file';
    else if (st.uid !== trust.uid)
      problem = `it is owned by uid ${st.uid}, not ${trust.uid === 0 ? 'root' : `uid ${trust.uid}`}`;
    else if (st.mode & 0o022) problem = 'it is writable by group or others';
    for (const dir of foldersUpTo(dirname(real), trust.from)) {
      if (problem) break;
      problem = unsafeFolderStat(lstatSync(dir), dir, trust.uid);
    }
    if (problem) throw new ScriptChanged(problem);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err instanceof ScriptChanged ? err : new ScriptChanged(String(err));
  }
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
