import { join } from 'node:path';
import { UsageError } from './errors.js';

/**
 * Every host path the program touches, below one root ("/" on a real host, a fixture folder
 * with --root). Nothing else in src/ spells out /sys, /proc, /etc or /var.
 */
export interface HostPaths {
  readonly root: string;
  readonly sys: string;
  readonly proc: string;
  readonly configFile: string;
  readonly definitionsDir: string;
  readonly hookScriptsDir: string;
  readonly pciIdsCandidates: readonly string[];
  /** Names this host among the `hosts:` sections of a shared config. */
  readonly hostnameFile: string;
}

export function hostPaths(root: string, overrides: Partial<Pick<HostPaths, 'configFile'>> = {}): HostPaths {
  const at = (...p: string[]) => join(root, ...p);
  return {
    root,
    sys: at('sys'),
    proc: at('proc'),
    configFile: overrides.configFile ?? at('etc/qemu-hook/config.yaml'),
    definitionsDir: at('etc/libvirt/qemu'),
    hookScriptsDir: at('etc/libvirt/hooks/qemu.d'),
    pciIdsCandidates: [at('usr/share/misc/pci.ids'), at('usr/share/hwdata/pci.ids')],
    hostnameFile: at('proc/sys/kernel/hostname'),
  };
}

/**
 * A path from the config (absolute, as on the real host) placed under the root. With a fixture
 * root, a path that would leave it (`/../../etc/passwd`) is refused: a fixture never reaches the host.
 */
export function underRoot(root: string, absolute: string): string {
  if (root === '/') return absolute;
  const placed = join(root, absolute);
  const base = root.endsWith('/') ? root : `${root}/`;
  if (placed !== root.replace(/\/$/, '') && !placed.startsWith(base))
    throw new UsageError(`${absolute} would lead out of the root folder ${root}: write a path inside it`);
  return placed;
}

/**
 * Where install.sh puts the README (the config reference): the place error messages send people,
 * fixed whatever --prefix the program was installed with.
 */
export const INSTALLED_README = '/usr/local/share/doc/qemu-hook/README.md';
