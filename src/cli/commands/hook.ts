import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultConfig, loadConfigFile } from '../../config/load.js';
import type { HookLogger } from '../../hook/logger.js';
import { runHook } from '../../hook/run.js';
import { openHookLog } from '../../host/hook-log.js';
import { SysfsInventoryReader } from '../../host/sysfs/inventory.js';
import type { HookEvent } from '../../model/hook-event.js';
import { childProcess } from '../../model/lazy-builtins.js';
import { hostPaths, underRoot } from '../../model/paths.js';
import { installFaultSwitch } from '../faults.js';
import { STDOUT, writeAll, writeErr } from '../output.js';

const DEVICE_OP_TIMEOUT_MS = 60_000;

/**
 * `qemu-hook hook <domain> <op> <subop> <extra>`, run by hooks/qemu for libvirt. The root comes
 * from QEMU_HOOK_ROOT, which only hooks/qemu sets (baked in by `install.sh --root`): libvirt
 * clears the environment, so nothing else can select a fixture host.
 */
export async function runHookFromCli(positionals: readonly string[]): Promise<number> {
  const [domain, op, subop = '-', extra = '-'] = positionals;
  if (!domain || !op) {
    writeErr('qemu-hook: hook mode needs <domain> <op> <subop> <extra>, as libvirt passes them');
    return 2;
  }
  const event: HookEvent = { domain, op, subop, extra };
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const paths = hostPaths(root);
  const configOnce = once(() => loadConfigFile(paths.configFile));
  const cfg = (await configOnce().catch(() => null))?.config ?? defaultConfig();
  const logFile = underRoot(root, cfg.log.file);
  // Script and helper output: beside the log, never libvirt's pipes.
  const outputLog = join(dirname(logFile), 'qemu-hook-scripts.log');
  const log = openHookLog(logFile, process.env['QEMU_HOOK_LOG_LEVEL'] || cfg.log.level, {
    domain,
    op,
    subop,
  });

  installFaultSwitch(paths);
  const xml = readStdin();
  const result = await runHook(event, xml, {
    paths,
    inventory: new SysfsInventoryReader(paths),
    control: async (config) => {
      if (root !== '/') {
        const { FixtureDriverControl } = await import('../../host/fixture-driver-control.js');
        return new FixtureDriverControl(root);
      }
      const { LibvirtDriverControl } = await import('../../host/libvirt/driver-control.js');
      return new LibvirtDriverControl(config.libvirtUri, paths.sys);
    },
    clock: { now: () => new Date() },
    log: log as HookLogger,
    timeoutMs: DEVICE_OP_TIMEOUT_MS,
    scriptLog: outputLog,
    config: configOnce,
    scheduleRedefine: (name, restart) => spawnRedefine(name, restart, root, outputLog),
    handoverHost: async (timeoutMs) => {
      const { makeHandoverHost } = await import('../wiring.js');
      return makeHandoverHost(paths, root !== '/', timeoutMs);
    },
  });
  if (result.stdout) writeAll(STDOUT, result.stdout);
  for (const line of result.stderr) writeErr(line);
  log.flush();
  return result.exitCode;
}

/**
 * The redefine helper, fully detached: its own session, stdio on a log file, nothing inherited
 * from libvirt's pipes (libvirt reads them until EOF, so a child holding them stalls the VM start).
 */
function spawnRedefine(domain: string, restart: boolean, root: string, logFile: string): boolean {
  try {
    mkdirSync(dirname(logFile), { recursive: true });
    const out = openSync(logFile, 'a');
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
