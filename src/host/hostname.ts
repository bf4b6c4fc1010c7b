import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { HostPaths } from '../model/paths.js';

/**
 * The host's name, as the `hosts:` sections of the config are matched against it: the kernel's
 * (`proc/sys/kernel/hostname` below the root, so a snapshot names the host it was taken on);
 * on the real host, the system's when /proc cannot be read; null for a fixture root without one.
 */
export function hostName(paths: HostPaths): string | null {
  try {
    const name = readFileSync(paths.hostnameFile, 'utf8').trim();
    if (name) return name;
  } catch {
    // no /proc (a fixture root, a container without it)
  }
  return paths.root === '/' ? hostname() || null : null;
}
