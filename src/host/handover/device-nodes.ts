import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { GpuNode } from '../../model/handover.js';
import { listDir, readSmall } from '../sysfs/sysfs-files.js';

// The GPU's device nodes, found from sysfs (`dev` attributes give "major:minor"), and the
// "major:minor" of any /dev path, to compare what a process holds with what the GPU has.
//
// Under a fixture root there are no device nodes: a fixture spells a character device as a
// regular file holding its "major:minor" (the way sysfs's `dev` attribute does), so the same
// comparison runs on a captured host. On the real root the node's st_rdev is read.

/** The GPU functions' DRM, fb, sound and NVIDIA nodes. */
export function gpuNodes(
  root: string,
  sys: string,
  proc: string,
  functions: readonly string[],
  firmwareFbs: readonly string[],
): GpuNode[] {
  const nodes: GpuNode[] = [];
  const add = (path: string, devFile: string | null, fn: string) => {
    let rdev: string | null = null;
    if (devFile) {
      try {
        rdev = readSmall(devFile).trim();
      } catch {
        rdev = null;
      }
    }
    if (!nodes.some((n) => n.path === path)) nodes.push({ path, rdev, function: fn });
  };
  for (const fn of functions) {
    const dev = join(sys, 'bus/pci/devices', fn);
    for (const name of listDir(join(dev, 'drm')) ?? []) {
      if (/^(card|renderD)\d+$/.test(name)) add(`/dev/dri/${name}`, join(dev, 'drm', name, 'dev'), fn);
    }
    for (const name of listDir(join(dev, 'graphics')) ?? []) {
      if (/^fb\d+$/.test(name)) add(`/dev/${name}`, join(dev, 'graphics', name, 'dev'), fn);
    }
    for (const card of listDir(join(dev, 'sound')) ?? []) {
      if (!/^card\d+$/.test(card)) continue;
      for (const name of listDir(join(dev, 'sound', card)) ?? []) {
        if (/^(controlC|pcmC|hwC|midiC)\d/.test(name))
          add(`/dev/snd/${name}`, join(dev, 'sound', card, name, 'dev'), fn);
      }
    }
    const minor = nvidiaMinor(proc, fn);
    if (minor !== null) {
      for (const name of listDir(join(root, 'dev')) ?? []) {
        // nvidiactl, nvidia-modeset and nvidia-uvm serve every NVIDIA GPU; nvidiaN only GPU N.
        if (name === `nvidia${minor}` || (/^nvidia\D/.test(name) && !/^nvidia\d/.test(name)))
          add(`/dev/${name}`, null, fn);
      }
    }
  }
  // A firmware framebuffer on the GPU's memory has its own fb node (efifb's fb0).
  for (const device of firmwareFbs) {
    const dir = join(sys, 'bus/platform/devices', device, 'graphics');
    for (const name of listDir(dir) ?? []) {
      if (/^fb\d+$/.test(name)) add(`/dev/${name}`, join(dir, name, 'dev'), functions[0] ?? device);
    }
  }
  return nodes;
}

/** "Device Minor: 0" of /proc/driver/nvidia/gpus/<bdf>/information; null when not an NVIDIA GPU. */
function nvidiaMinor(proc: string, fn: string): number | null {
  try {
    const text = readFileSync(join(proc, 'driver/nvidia/gpus', fn, 'information'), 'utf8');
    const m = /^Device Minor:\s*(\d+)/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** "major:minor" of a /dev path, null when it is not a device node (or, in a fixture, not described). */
export function rdevOf(root: string, path: string): string | null {
  if (root === '/') {
    try {
      const st = statSync(path, { bigint: true });
      if (!st.isCharacterDevice()) return null;
      const dev = st.rdev;
      // Linux's dev_t encoding (glibc gnu_dev_major/minor).
      const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
      const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
      return `${major}:${minor}`;
    } catch {
      return null;
    }
  }
  try {
    const text = readFileSync(join(root, path), 'utf8').trim();
    return /^\d+:\d+$/.test(text) ? text : null;
  } catch {
    return null;
  }
}

/** Names in a folder, sorted numerically when they are numbers. */
export function numericEntries(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
}
