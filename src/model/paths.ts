import { join } from 'node:path';

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

/** A path from the config (absolute, as on the real host) placed under the root. */
export function underRoot(root: string, absolute: string): string {
  return root === '/' ? absolute : join(root, absolute);
}

/**
 * Where install.sh puts the README (the config reference): the place error messages send people,
 * fixed whatever --prefix the program was installed with.
 */
export const INSTALLED_README = '/usr/local/share/doc/qemu-hook/README.md';
