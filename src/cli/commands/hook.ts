import { closeSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultConfig, loadConfigFile } from '../../config/load.js';
import type { Config } from '../../config/model.js';
import type { HookLogger } from '../../hook/logger.js';
import { runHook } from '../../hook/run.js';
import { openAppendNoFollow, openHookLog } from '../../host/hook-log.js';
import { hostName } from '../../host/hostname.js';
import type { NodeDeviceConnection } from '../../host/libvirt/connection.js';
import { exitProcess } from '../../host/libvirt/loader.js';
import { SysfsHostSafety } from '../../host/sysfs/host-safety.js';
import { SysfsInventoryReader } from '../../host/sysfs/inventory.js';
import { trustedPaths, trustedUid, trustProblems } from '../../host/trust.js';
import { errorMessage } from '../../model/errors.js';
import type { HookEvent } from '../../model/hook-event.js';
import { childProcess } from '../../model/lazy-builtins.js';
import { type HostPaths, hostPaths, underRoot } from '../../model/paths.js';
import type { DriverControl } from '../../model/ports.js';
import { installFaultSwitch } from '../faults.js';
import { STDOUT, writeAll, writeErr } from '../output.js';
import { RunPhases } from '../run-phases.js';
import { snapshotRootRefusal } from '../wiring.js';

/** libvirt's connection as the resident worker began to open it, for `uri`, when the event arrived. */
export interface EarlyConnection {
  readonly uri: string;
  readonly pending: Promise<NodeDeviceConnection>;
}

const DEVICE_OP_TIMEOUT_MS = 60_000;
/** After the deadline, the run's own checks (scripts stopped, a start rolled back) get this long to finish. */
const DEADLINE_GRACE_MS = 5_000;

/**
 * `qemu-hook hook <domain> <op> <subop> <extra>`, run by hooks/qemu for libvirt. The root comes
 * from QEMU_HOOK_ROOT, which only hooks/qemu sets (baked in by `install.sh --root`): libvirt
 * clears the environment, so nothing else can select a fixture host. `input.xml`: the domain's
 * definition when it is not on stdin (the startup snapshot's warm-up runs, the resident hook's
 * workers); `input.resident`: run by a worker of `qemu-hook serve` (said in the log).
 */
export async function runHookFromCli(
  positionals: readonly string[],
  input: {
    xml?: string;
    resident?: boolean;
    /** When the resident worker accepted the event: its run's times count from there. */
    arrived?: { ms: number; cpu: NodeJS.CpuUsage };
    connection?: EarlyConnection;
    /** Called with the exit status once the answer is written, before the program closes libvirt's connections. */
    answered?: (exitCode: number) => void;
  } = {},
): Promise<number> {
  const [domain, op, subop = '-', extra = '-'] = positionals;
  if (!domain || !op) {
    writeErr('qemu-hook: hook mode needs <domain> <op> <subop> <extra>, as libvirt passes them');
    return 2;
  }
  const event: HookEvent = { domain, op, subop, extra };
  const phases = new RunPhases(input.resident, input.arrived);
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const readOnly = snapshotRootRefusal(root, 'the hook', `QEMU_HOOK_ROOT ${root}`);
  if (readOnly) {
    writeErr(`qemu-hook: ${domain}: refused: ${readOnly}`);
    return 2;
  }
  const paths = hostPaths(root);
  const configOnce = once(
    phases.timed('config', () => loadConfigFile(paths.configFile, { host: hostName(paths) })),
  );
  const cfg = (await configOnce().catch(() => null))?.config ?? defaultConfig();
  const strict = STRICT_OPS.has(op);
  // Nothing is logged, run or touched on the word of files someone other than root can change.
  const untrusted = trustProblem(paths, cfg);
  if (untrusted) {
    writeErr(`qemu-hook: ${domain}: refused: ${untrusted}`);
    return strict ? 1 : 0;
  }
  const logFile = underRoot(root, cfg.log.file);
  // Script and helper output: beside the log, never libvirt's pipes.
  const outputLog = join(dirname(logFile), 'qemu-hook-scripts.log');
  const log = openHookLog(logFile, process.env['QEMU_HOOK_LOG_LEVEL'] || cfg.log.level, {
    domain,
    op,
    subop,
  });

  installFaultSwitch(paths);
  let control: Promise<DriverControl> | undefined;
  const makeControl = phases.timed('control', async (config: Config): Promise<DriverControl> => {
    if (root !== '/') {
      const { FixtureDriverControl } = await import('../../host/fixture-driver-control.js');
      return new FixtureDriverControl(root);
    }
    const { LibvirtDriverControl } = await import('../../host/libvirt/driver-control.js');
    const early = input.connection;
    if (early?.uri !== config.libvirtUri) return new LibvirtDriverControl(config.libvirtUri, paths.sys);
    // The resident worker's connection, opening since the event arrived; opened anew should it fail.
    const { LibvirtConnection } = await import('../../host/libvirt/connection.js');
    const { earlyThenOpen } = await import('../../host/libvirt/lazy-connection.js');
    return new LibvirtDriverControl(
      earlyThenOpen(early.pending, () => LibvirtConnection.open(config.libvirtUri)),
      paths.sys,
    );
  });
  if (process.env['QEMU_HOOK_SNAPSHOT_REJECTED'])
    log.warn(
      {},
      'node rejected the startup snapshot (another node or CPU than it was made for); started from the code cache. Run install.sh again to make a new one',
    );
  // libvirt waits for the hook without a limit, holding the domain: past the deadline the run ends
  // whatever it is waiting on (a start that did not finish is then given back by the release libvirt
  // sends after a failed prepare; the write-ahead records say what to give back).
  const deadline = Date.now() + cfg.limits.hookSeconds * 1000;
  setTimeout(
    () => {
      const line = `qemu-hook: ${domain}: ${op} did not finish within ${cfg.limits.hookSeconds} s (limits.hookSeconds); stopped`;
      log.error({ domain, op }, line);
      log.flush();
      writeErr(line);
      exitProcess(strict ? 1 : 0);
    },
    cfg.limits.hookSeconds * 1000 + DEADLINE_GRACE_MS,
  ).unref();

  const xml = input.xml ?? readStdin();
  const result = await runHook(event, xml, {
    paths,
    inventory: phases.inventory(new SysfsInventoryReader(paths)),
    safety: new SysfsHostSafety(paths.sys, paths.proc),
    // Under a fixture root its owner stands for root (the trust check above succeeded, so it reads).
    scriptOwnerUid: trustedUid(paths.root),
    // One per run: the one warmed up early (its libvirt connection opening) is the one used.
    control: (config) => (control ??= makeControl(config)),
    clock: { now: () => new Date() },
    log: log as HookLogger,
    timeoutMs: DEVICE_OP_TIMEOUT_MS,
    scriptLog: outputLog,
    config: configOnce,
    scriptTimeoutMs: cfg.limits.scriptSeconds * 1000,
    deadline,
    scheduleRedefine: (name, restart) => spawnRedefine(name, restart, root, outputLog),
    handoverHost: async (timeoutMs) => {
      const { makeHandoverHost } = await import('../wiring.js');
      return makeHandoverHost(paths, root !== '/', timeoutMs);
    },
  });
  if (result.stdout) writeAll(STDOUT, result.stdout);
  for (const line of result.stderr) writeErr(line);
  // From the process's start (Node's own start included): what this event cost libvirt's wait.
  log.debug(
    { ...phases.fields(), exitCode: result.exitCode, ...(input.resident ? { resident: true } : {}) },
    'hook run done',
  );
  log.flush();
  // The resident worker answers now; libvirt's connections are closed on the program's way out
  // (closeOpenConnections), after the answer.
  input.answered?.(result.exitCode);
  return result.exitCode;
}

/**
 * The redefine helper, fully detached: its own session, stdio on a log file, nothing inherited
 * from libvirt's pipes (libvirt reads them until EOF, so a child holding them stalls the VM start).
 */
function spawnRedefine(domain: string, restart: boolean, root: string, logFile: string): boolean {
  try {
    mkdirSync(dirname(logFile), { recursive: true });
    const out = openAppendNoFollow(logFile);
    const child = childProcess().spawn(
      process.execPath,
      [
        // The program's entry, whichever way it was built or installed.
        process.argv[1]!,
        'redefine',
        domain,
        restart ? 'restart' : 'redefine',
      ],
      {
        detached: true,
        stdio: ['ignore', out, out],
        env: { ...process.env, QEMU_HOOK_ROOT: root },
      },
    );
    child.unref();
    closeSync(out);
    return child.pid !== undefined;
  } catch {
    return false;
  }
}

/** The ops whose failure libvirt acts on (as hooks/qemu has them); every other op exits 0. */
const STRICT_OPS = new Set(['prepare', 'start', 'started', 'migrate', 'restore']);

/** The first reason not to act on the config's word (its files writable by others), or null. */
export function trustProblem(paths: HostPaths, cfg: Config): string | null {
  try {
    const files = { stateFile: cfg.stateFile, logFile: cfg.log.file };
    return trustProblems(trustedPaths(paths, files), trustedUid(paths.root))[0] ?? null;
  } catch (err) {
    return `cannot check who owns the config and state: ${errorMessage(err)}`;
  }
}

/** libvirt writes the domain XML and closes stdin; an absent stdin reads as empty. */
function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return '';
  }
}

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => (p ??= f());
}
