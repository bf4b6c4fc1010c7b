import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  type Stats,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RunResult, run, TOOL_ENV } from './run.js';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'libvirtd-ns.sh');
const READY_TIMEOUT_MS = 180_000; // the first connection probes QEMU: seconds on a slow, busy runner
const STOP_GRACE_MS = 15_000;

// The machine's folders the private daemon hides; a caller's etcDir may never be one of them.
const PROTECTED = ['/etc', '/run/libvirt', '/var/lib/libvirt', '/var/log/libvirt', '/var/cache/libvirt'];

export interface StartOptions {
  /** A folder whose contents become /etc/libvirt/hooks inside the namespace (copied, modes kept). */
  readonly hooksDir?: string;
  /**
   * Use this existing folder as /etc/libvirt (e.g. `<root>/etc/libvirt` of a host set up with
   * `install.sh --root`), instead of a fresh one. It is never removed; qemu.conf is written into it
   * when absent.
   */
  readonly etcDir?: string;
  /** libvirtd.conf's host_uuid: two daemons of this machine migrate to each other only when theirs differ. */
  readonly hostUuid?: string;
  /** More libvirt log filters at debug level, e.g. `1:util.command` (logs what a hook printed). */
  readonly debugLog?: string;
}

export interface DaemonTimings {
  /** From spawning the daemon to the first successful `virsh version` (includes QEMU's probe). */
  readonly firstConnectMs: number;
}

export interface PrivateLibvirtd {
  /** qemu:///system through this daemon's own socket. */
  readonly uri: string;
  /** The folder the daemon sees as /etc/libvirt (hooks/ is in it). */
  readonly etcDir: string;
  /** The folder the daemon sees as /var/log/libvirt (qemu/<domain>.log is in it). */
  readonly logDir: string;
  /** Everything else the daemon owns (run/, lib/, cache/, sock/, libvirtd.conf). */
  readonly stateDir: string;
  /** PID of the libvirtd process (the harness started it; it is not a child of anything else). */
  pid(): number;
  /** Timings of the latest start or restart. */
  timings(): DaemonTimings;
  virsh(args: readonly string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Like virsh, but rejects with the command and its stderr when it exits non-zero. */
  virshOk(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** SIGHUP: libvirtd notices hooks added or removed since it started. Resolves once it has. */
  reloadHooks(): Promise<void>;
  /**
   * Stops the daemon (domains keep running) and starts it again on the same state. Resolves once
   * every domain that was running has been reconnected (its reconnect hook has returned).
   */
  restart(): Promise<void>;
  /** libvirtd's log file, then whatever it wrote to stdout/stderr. */
  daemonLog(): string;
  /** Destroys running domains, stops the daemon, kills what it left, removes the temp folders. */
  stop(): Promise<void>;
}

/** The folder etcDir really is; throws when that is the machine's /etc or a libvirt folder. */
export function assertSafeEtcDir(etcDir: string): string {
  if (!isAbsolute(etcDir)) throw new Error(`etcDir must be absolute: ${etcDir}`);
  const real = resolveLinks(etcDir);
  for (const p of PROTECTED) {
    const rel = relative(p, real);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
      throw new Error(`etcDir ${etcDir} is the machine's ${p} or inside it: refusing`);
    }
  }
  if (!existsSync(real)) throw new Error(`etcDir does not exist: ${etcDir}`);
  return real;
}

/**
 * The path with every symbolic link in it resolved, also where its end does not exist: a link to
 * /etc followed by `libvirt` is /etc/libvirt whether or not this machine has that folder (on one
 * without libvirt it does not, and the link must still be seen through).
 */
function resolveLinks(path: string): string {
  const missing: string[] = [];
  let at = resolve(path);
  for (let hops = 0; hops < 40; hops++) {
    try {
      return join(realpathSync(at), ...missing);
    } catch {
      const link = lstatOrNull(at);
      if (link?.isSymbolicLink()) {
        at = resolve(dirname(at), readlinkSync(at));
        continue;
      }
      if (dirname(at) === at) break;
      missing.unshift(basename(at));
      at = dirname(at);
    }
  }
  return resolve(path);
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

let libvirtQemuChecked = false;

/** libvirt's Debian build names libvirt-qemu as QEMU's default user; the daemon package creates it. */
export function ensureLibvirtQemuUser(): void {
  if (libvirtQemuChecked) return;
  const has = (db: string) => {
    try {
      execFileSync('getent', [db, 'libvirt-qemu'], { env: { ...TOOL_ENV }, stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  };
  // Another test file may create them at the same moment: a failure is fine if they exist afterwards.
  const add = (db: string, cmd: string, args: string[]) => {
    if (has(db)) return;
    try {
      execFileSync(cmd, args, { env: { ...TOOL_ENV }, stdio: 'pipe' });
    } catch (e) {
      if (!has(db)) throw new Error(`cannot create ${db} libvirt-qemu: ${(e as Error).message}`);
    }
  };
  add('group', 'groupadd', ['--system', 'libvirt-qemu']);
  add('passwd', 'useradd', [
    '--system',
    '--gid',
    'libvirt-qemu',
    '--home-dir',
    '/var/lib/libvirt',
    '--no-create-home',
    '--shell',
    '/usr/sbin/nologin',
    'libvirt-qemu',
  ]);
  libvirtQemuChecked = true;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * QEMU processes of this daemon's domains, from the pid files in its private /run/libvirt/qemu:
 * a PID counts only while its command line still names that domain (PIDs get reused).
 */
function domainProcesses(stateDir: string): number[] {
  const dir = join(stateDir, 'run', 'qemu');
  if (!existsSync(dir)) return [];
  const pids: number[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.pid')) continue;
    const name = file.slice(0, -'.pid'.length);
    try {
      const pid = Number.parseInt(readFileSync(join(dir, file), 'utf8').trim(), 10);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.includes('qemu') && cmdline.some((a) => a.startsWith(`guest=${name},`))) pids.push(pid);
    } catch {
      // pid file being removed, or the process already gone
    }
  }
  return pids;
}

async function waitGone(pids: readonly number[], ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (pids.some(alive)) {
    if (Date.now() > until) return false;
    await sleep(50);
  }
  return true;
}

function hookCheckCount(logFile: string): number {
  if (!existsSync(logFile)) return 0;
  return (readFileSync(logFile, 'utf8').match(/hook script \S*\/hooks\/qemu\b/g) ?? []).length;
}

/** Starts a private libvirtd (see libvirtd-ns.sh) and waits until it answers. */
export async function startLibvirtd(options: StartOptions = {}): Promise<PrivateLibvirtd> {
  ensureLibvirtQemuUser();
  const externalEtc = options.etcDir === undefined ? undefined : assertSafeEtcDir(options.etcDir);
  const stateDir = mkdtempSync(join(tmpdir(), 'qemu-hook-e2e-'));
  const etcLink = join(stateDir, 'etc');
  if (externalEtc) symlinkSync(externalEtc, etcLink);
  else mkdirSync(etcLink);
  const etcDir = externalEtc ?? etcLink;
  const logDir = join(stateDir, 'log');
  mkdirSync(logDir);
  const logFile = join(logDir, 'libvirtd.log');
  const outFile = join(stateDir, 'libvirtd.out');
  if (options.hooksDir !== undefined) {
    cpSync(options.hooksDir, join(etcDir, 'hooks'), { recursive: true, verbatimSymlinks: true });
  }
  const uri = `qemu:///system?socket=${join(stateDir, 'sock', 'libvirt-sock')}`;

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let isRunning = false;
  let stopped = false;
  let timings: DaemonTimings = { firstConnectMs: Number.NaN };

  const virsh = (args: readonly string[], opts: { timeoutMs?: number } = {}) =>
    run('virsh', ['-c', uri, ...args], opts);

  const daemonLog = () => {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    const out = read(outFile);
    return read(logFile) + (out ? `--- libvirtd stdout/stderr ---\n${out}` : '');
  };

  const terminate = async () => {
    const proc = child;
    if (!proc?.pid || !isRunning) return;
    proc.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
    if (!done) {
      proc.kill('SIGKILL');
      await exited;
    }
  };

  const spawnDaemon = async () => {
    const out = openSync(outFile, 'a');
    const started = Date.now();
    // No `detached`: a Ctrl-C of the test run reaches libvirtd too, and it shuts down.
    const proc = spawn('/bin/bash', [LAUNCHER, stateDir], {
      stdio: ['ignore', out, out],
      env: {
        ...TOOL_ENV,
        ...(options.hostUuid ? { QEMU_HOOK_E2E_HOST_UUID: options.hostUuid } : {}),
        ...(options.debugLog ? { QEMU_HOOK_E2E_DEBUG_LOG: options.debugLog } : {}),
      },
    });
    closeSync(out);
    child = proc;
    isRunning = true;
    exited = new Promise((resolve) =>
      proc.once('exit', () => {
        isRunning = false;
        resolve();
      }),
    );
    const until = started + READY_TIMEOUT_MS;
    let last: RunResult | undefined;
    while (Date.now() < until) {
      if (!isRunning) break;
      last = await virsh(['version'], { timeoutMs: READY_TIMEOUT_MS });
      if (last.code === 0) {
        timings = { firstConnectMs: Date.now() - started };
        return;
      }
      await sleep(100);
    }
    const why = isRunning
      ? `no answer within ${READY_TIMEOUT_MS} ms`
      : `exited (${proc.exitCode ?? proc.signalCode})`;
    await terminate();
    throw new Error(`private libvirtd ${why}; last virsh: ${last?.stderr.trim()}\n${daemonLog()}`);
  };

  const killLeftovers = async () => {
    const pids = domainProcesses(stateDir);
    for (const pid of pids) signal(pid, 'SIGKILL');
    await waitGone(pids, 10_000);
  };

  // Last resort if the test process exits without stop(): nothing of ours may outlive it.
  const onExit = () => {
    if (child?.pid && isRunning) child.kill('SIGKILL');
    for (const pid of domainProcesses(stateDir)) signal(pid, 'SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  try {
    await spawnDaemon();
  } catch (e) {
    await killLeftovers();
    rmSync(stateDir, { recursive: true, force: true });
    process.removeListener('exit', onExit);
    throw e;
  }

  return {
    uri,
    etcDir,
    logDir,
    stateDir,
    pid: () => child?.pid ?? -1,
    timings: () => timings,
    virsh,
    async virshOk(args, opts) {
      const r = await virsh(args, opts);
      if (r.code !== 0) throw new Error(`virsh ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    },
    async reloadHooks() {
      if (!child?.pid || !isRunning) throw new Error('private libvirtd is not running');
      const before = hookCheckCount(logFile);
      child.kill('SIGHUP');
      const until = Date.now() + 30_000;
      while (hookCheckCount(logFile) <= before) {
        if (Date.now() > until)
          throw new Error(`libvirtd did not re-read its hooks after SIGHUP\n${daemonLog()}`);
        await sleep(20);
      }
      // The check of the qemu hook is logged as it happens; the few checks after it take microseconds.
      await sleep(50);
    },
    async restart() {
      if (stopped) throw new Error('private libvirtd was stopped');
      const running = (await virsh(['list', '--name'], { timeoutMs: 30_000 })).stdout
        .split('\n')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      await terminate();
      await spawnDaemon();
      // libvirt reconnects to running domains in background threads, each holding the domain's job
      // while it runs the reconnect hook (and kills the domain if the hook fails). dommemstat waits
      // for that job, so once it answers, the reconnect of that domain is over, whatever its outcome.
      for (const name of running) {
        const until = Date.now() + READY_TIMEOUT_MS;
        while (Date.now() < until) {
          const r = await virsh(['dommemstat', name], { timeoutMs: READY_TIMEOUT_MS });
          if (!/cannot acquire state change lock/.test(r.stderr)) break;
        }
      }
    },
    daemonLog,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        if (isRunning) {
          const list = await virsh(['list', '--name'], { timeoutMs: 30_000 });
          for (const name of list.stdout.split('\n').map((s) => s.trim())) {
            if (name) await virsh(['destroy', name], { timeoutMs: 30_000 });
          }
        }
        await terminate();
        await killLeftovers();
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
        process.removeListener('exit', onExit);
      }
    },
  };
}
