import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../model/errors.js';
import type {
  GpuHolder,
  GpuNode,
  HandoverSnapshot,
  KernelModule,
  ServiceState,
  VirtualConsole,
} from '../../model/handover.js';
import type { HostPaths } from '../../model/paths.js';
import type { HandoverProbe, ServiceManager } from '../../model/ports.js';
import { linkName, readSmall } from '../sysfs/sysfs-files.js';
import { firmwareFramebuffers, framebuffers, vtcons } from './consoles.js';
import { gpuNodes } from './device-nodes.js';
import { findHolders } from './holders.js';
import { readModule } from './modules.js';

/**
 * Reads a GPU's surroundings below the host root (so `--root` works on a captured host), and the
 * service manager for what systemd and logind know. Reads only: `--simulate` and `status` use it.
 */
export class SysfsHandoverProbe implements HandoverProbe {
  constructor(
    private readonly paths: HostPaths,
    private readonly services: ServiceManager,
    private readonly self: number = process.pid,
  ) {}

  async snapshot(
    functions: readonly string[],
    wanted: { readonly units: readonly string[]; readonly modules: readonly string[] },
  ): Promise<HandoverSnapshot> {
    const { sys, proc, root } = this.paths;
    const warnings: string[] = [];
    const drivers: Record<string, string | null> = {};
    let bootVga = false;
    for (const f of functions) {
      drivers[f] = linkName(join(sys, 'bus/pci/devices', f, 'driver'));
      try {
        if (readSmall(join(sys, 'bus/pci/devices', f, 'boot_vga')).trim() === '1') bootVga = true;
      } catch {
        // not a VGA function
      }
    }
    const firmware = firmwareFramebuffers(sys, proc, functions, bootVga);
    const nodes = gpuNodes(
      root,
      sys,
      proc,
      functions,
      firmware.filter((f) => f.onGpuBy !== null).map((f) => f.device),
    );
    const holders = findHolders(root, proc, nodes, this.self);
    const displayManager = displayManagerUnit(root);
    const units = new Set<string>([...wanted.units]);
    if (displayManager) units.add(displayManager);
    for (const h of holders) if (h.unit && !h.userManager && !h.session) units.add(h.unit);
    const services: ServiceState[] = [];
    // What systemd or logind could not answer: one line when it is one reason (systemd not
    // reachable, a snapshot that did not capture them), one per question otherwise.
    const unknown: { what: string; why: string }[] = [];
    // One question for all (a child process, not one per unit); unit by unit only when it fails,
    // so that each unknown unit is named with its own reason.
    const asked = [...units];
    const active = await this.services.activeAmong(asked).catch(() => null);
    if (active) for (const unit of asked) services.push({ unit, active: active.has(unit) });
    else
      for (const unit of asked) {
        try {
          services.push({ unit, active: await this.services.isActive(unit) });
        } catch (err) {
          unknown.push({ what: `whether ${unit} is active`, why: errorMessage(err) });
        }
      }
    let sessions: HandoverSnapshot['sessions'] = [];
    try {
      sessions = await this.services.sessions();
    } catch (err) {
      unknown.push({ what: 'the logind sessions', why: errorMessage(err) });
    }
    const reasons = [...new Set(unknown.map((u) => u.why))];
    if (reasons.length === 1)
      warnings.push(
        `unknown: ${unknown.map((u) => u.what).join(', ')}: ${reasons[0]}; the steps that depend on them are left out`,
      );
    else for (const u of unknown) warnings.push(`cannot tell ${u.what}: ${u.why}`);
    return {
      functions,
      bootVga,
      drivers,
      nodes,
      framebuffers: framebuffers(sys, proc),
      firmwareFramebuffers: firmware,
      vtcons: vtcons(sys),
      holders,
      modules: wanted.modules.map((m) => readModule(sys, m)),
      displayManager,
      services,
      sessions,
      warnings,
    };
  }

  async nodes(functions: readonly string[]): Promise<readonly GpuNode[]> {
    const { sys, proc, root } = this.paths;
    const bootVga = functions.some((f) => {
      try {
        return readSmall(join(sys, 'bus/pci/devices', f, 'boot_vga')).trim() === '1';
      } catch {
        return false;
      }
    });
    const firmware = firmwareFramebuffers(sys, proc, functions, bootVga).filter((f) => f.onGpuBy !== null);
    return gpuNodes(
      root,
      sys,
      proc,
      functions,
      firmware.map((f) => f.device),
    );
  }

  async holders(nodes: readonly GpuNode[], among?: readonly number[]): Promise<readonly GpuHolder[]> {
    return findHolders(this.paths.root, this.paths.proc, nodes, this.self, among);
  }

  async vtcons(): Promise<readonly VirtualConsole[]> {
    return vtcons(this.paths.sys);
  }

  async platformDriver(device: string): Promise<string | null | 'gone'> {
    const dir = join(this.paths.sys, 'bus/platform/devices', device);
    if (!existsSync(dir)) return 'gone';
    return linkName(join(dir, 'driver'));
  }

  async module(name: string): Promise<KernelModule> {
    return readModule(this.paths.sys, name);
  }

  async pciDriver(address: string): Promise<string | null> {
    return linkName(join(this.paths.sys, 'bus/pci/devices', address, 'driver'));
  }
}

/**
 * The unit display-manager.service stands for: the alias link's target ("gdm.service"), or the
 * unit itself when a unit file has that name; null when the host has none.
 */
function displayManagerUnit(root: string): string | null {
  const alias = join(root, 'etc/systemd/system/display-manager.service');
  const target = linkName(alias);
  if (target) return target;
  const files = ['etc/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system'].map((d) =>
    join(root, d, 'display-manager.service'),
  );
  return files.some((f) => existsSync(f)) ? 'display-manager.service' : null;
}
