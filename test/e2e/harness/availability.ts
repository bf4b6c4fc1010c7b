import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { TOOL_ENV } from './run.js';

const REQUIRED_PROGRAMS = ['libvirtd', 'virsh', 'qemu-system-x86_64', 'unshare', 'mount', 'bash'] as const;
// Where distributions put libvirt's loadable drivers; without the qemu one, qemu:///system has no driver.
const DRIVER_DIRS = [
  '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver',
  '/usr/lib/aarch64-linux-gnu/libvirt/connection-driver',
  '/usr/lib64/libvirt/connection-driver',
  '/usr/lib/libvirt/connection-driver',
];

export function findProgram(name: string): string | undefined {
  for (const dir of (TOOL_ENV['PATH'] ?? '').split(':')) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root (mount namespaces, a system libvirtd)';
  const missing = REQUIRED_PROGRAMS.filter((p) => findProgram(p) === undefined);
  if (missing.length > 0) {
    return `missing ${missing.join(', ')} (Debian: apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86)`;
  }
  if (!DRIVER_DIRS.some((d) => existsSync(join(d, 'libvirt_driver_qemu.so')))) {
    return 'libvirt has no qemu driver (Debian: apt-get install libvirt-daemon-driver-qemu)';
  }
  try {
    execFileSync('unshare', ['--mount', '--propagation', 'private', 'true'], {
      env: { ...TOOL_ENV },
      stdio: 'pipe',
    });
  } catch (e) {
    return `cannot create a mount namespace here (unshare --mount failed: ${(e as Error).message.split('\n')[0]})`;
  }
  return undefined;
}

let cached: { reason: string | undefined } | undefined;
let told = false;

/** Why a private libvirtd cannot run on this machine, or undefined when it can. */
export function libvirtdUnavailableReason(): string | undefined {
  cached ??= { reason: probe() };
  return cached.reason;
}

/**
 * For `describe.skipIf(!canRunLibvirtd())`. Prints the reason once when it says no, and throws
 * instead when QEMU_HOOK_E2E=require (CI), so that a broken runner cannot pass by skipping.
 */
export function canRunLibvirtd(): boolean {
  const reason = libvirtdUnavailableReason();
  if (reason === undefined) return true;
  if (process.env['QEMU_HOOK_E2E'] === 'require') {
    throw new Error(`QEMU_HOOK_E2E=require but a private libvirtd cannot run: ${reason}`);
  }
  if (!told) console.warn(`e2e tests with a real libvirtd skipped: ${reason}`);
  told = true;
  return false;
}
