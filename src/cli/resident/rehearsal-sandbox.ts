// The rehearsal's whole event: a VM's start and stop run through the hook's own code (runHook) on
// a sandbox, so that what an event runs after reading and planning (the write-ahead and final
// state saves under the lock, the driver steps and their checks, the release's re-checks, the log
// lines) is compiled and warm too, not only the reading and planning (measured on the bench's
// 300-device host, in-process after three rounds: a start's run 30 -> 23-28 ms).
//
// The sandbox: the host is read as the event reads it (the inventory, the safety re-checks, the
// VM's definition file, the state file's records), and nothing the run would change is the host's:
// the state file (a copy of the host's records) and its lock are under a private temporary folder
// (removed after), drivers move in memory only, per-VM scripts are looked for in an empty folder of
// the sandbox, and the run gets no redefine helper, no hand-over and no libvirt (an idle worker
// calling libvirt while libvirt waits for a hook could wait on the very domain the hook holds); its
// log lines are formatted and written nowhere.
import { join } from 'node:path';
import type { Config } from '../../config/model.js';
import type { HookLogger } from '../../hook/logger.js';
import { type HookDeps, runHook } from '../../hook/run.js';
import { FileDefinitionStore } from '../../host/definition-files.js';
import { rehearsalLog } from '../../host/hook-log.js';
import { SysfsHostSafety } from '../../host/sysfs/host-safety.js';
import type { SysfsInventoryReader } from '../../host/sysfs/inventory.js';
import { linkName } from '../../host/sysfs/sysfs-files.js';
import { type HostPaths, underRoot } from '../../model/paths.js';
import type { PciAddress } from '../../model/pci-address.js';
import type { DriverControl } from '../../model/ports.js';
import { loadState, saveState } from '../../state/file.js';
import { withPrivateFolder } from './private-folder.js';

/** Longer than any device step in memory takes: past it the sandbox's run gives up. */
const SANDBOX_TIMEOUT_MS = 5_000;

/**
 * Drivers moved in memory, as libvirt and the kernel would move them: each device starts on the
 * driver the host has bound now (its sysfs link, read only), a detach puts it on vfio-pci, a
 * reattach back on the driver it had before (none when that was vfio-pci: the hook then binds the
 * recorded one itself). Every call refuses once the rehearsal is stopped, so that a run under way
 * ends at its next step.
 */
export class SandboxDriverControl implements DriverControl {
  private readonly drivers = new Map<string, string | null>();
  /** The driver each device had before its first detach here. */
  private readonly before = new Map<string, string | null>();

  constructor(
    private readonly sys: string,
    private readonly stopped: () => boolean,
  ) {}

  async detach(address: PciAddress): Promise<void> {
    const key = address.toString();
    if (!this.before.has(key)) this.before.set(key, await this.currentDriver(address));
    this.set(address, 'vfio-pci');
  }

  async reattach(address: PciAddress): Promise<void> {
    const was = this.before.get(address.toString()) ?? this.hostDriver(address);
    this.set(address, was === 'vfio-pci' ? null : was);
  }

  async bindDriver(address: PciAddress, driver: string): Promise<void> {
    this.set(address, driver);
  }

  async unbind(address: PciAddress): Promise<void> {
    this.set(address, null);
  }

  async currentDriver(address: PciAddress): Promise<string | null> {
    this.check();
    const key = address.toString();
    return this.drivers.has(key) ? (this.drivers.get(key) ?? null) : this.hostDriver(address);
  }

  private set(address: PciAddress, driver: string | null): void {
    this.check();
    this.drivers.set(address.toString(), driver);
  }

  private hostDriver(address: PciAddress): string | null {
    return linkName(join(this.sys, 'bus/pci/devices', address.toString(), 'driver'));
  }

  private check(): void {
    refuseIfStopped(this.stopped);
  }
}

/** What every sandbox port does first: a stopped rehearsal's run ends at its next step. */
function refuseIfStopped(stopped: () => boolean): void {
  if (stopped()) throw new Error('the rehearsal stopped');
}

/**
 * `domain`'s start (prepare/begin) and stop (release/end), run whole by the hook's code on a
 * sandbox (see above), with its definition file as libvirt's XML and the host's state file's
 * records as the sandbox's. Resolves with the start's exit status (0: it went through, and the stop
 * gave back in memory what it took; 1: refused, and the refusal's path is what got warm); null when
 * there was nothing to run (no definition file). Throws what reading the host's state file throws.
 */
export async function rehearseStartAndStop(
  paths: HostPaths,
  config: Config,
  domain: string,
  inventory: SysfsInventoryReader,
  stopped: () => boolean,
): Promise<number | null> {
  const found = await FileDefinitionStore.of(paths).persistentXml(domain);
  if (!found) return null;
  const state = await loadState(underRoot(paths.root, config.stateFile), { readOnly: true });
  return withPrivateFolder(async (sandbox) => {
    await saveState(underRoot(sandbox, config.stateFile), state);
    const check = () => refuseIfStopped(stopped);
    const control = new SandboxDriverControl(paths.sys, stopped);
    const deps: HookDeps = {
      // Under the sandbox's root: the state file and its lock (the config's stateFile placed below
      // it) and the per-VM scripts' folder, which does not exist there.
      paths: { ...paths, root: sandbox, hookScriptsDir: join(sandbox, 'qemu.d') },
      inventory: {
        read: async () => {
          check();
          return inventory.readSync();
        },
        bootId: async () => {
          check();
          return inventory.bootId();
        },
      },
      safety: new SysfsHostSafety(paths.sys, paths.proc),
      control: async () => control,
      clock: { now: () => new Date() },
      log: rehearsalLog() as HookLogger,
      timeoutMs: SANDBOX_TIMEOUT_MS,
      scriptLog: join(sandbox, 'scripts.log'),
      // The config the worker parsed ahead, as is: loading it would use up the parse the event is to use.
      config: async () => ({ config, warnings: [], errors: [], missing: false }),
    };
    const start = await runHook({ domain, op: 'prepare', subop: 'begin', extra: '-' }, found.xml, deps);
    check();
    await runHook({ domain, op: 'release', subop: 'end', extra: '-' }, found.xml, deps);
    return start.exitCode;
  });
}
