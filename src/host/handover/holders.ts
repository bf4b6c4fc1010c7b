import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GpuHolder, GpuNode } from '../../model/handover.js';
import { listDir, readlinkOrNull } from '../sysfs/sysfs-files.js';
import { numericEntries, rdevOf } from './device-nodes.js';

/**
 * Processes that hold any of `nodes`: an open fd (/proc/<pid>/fd) or a mapping (/proc/<pid>/maps)
 * of a /dev path whose "major:minor" is one of the nodes' (or, for nodes known by path only, the
 * path itself). Each with its unit or session from /proc/<pid>/cgroup. Processes that vanish while
 * being read are skipped: they hold nothing any more. `among`: only these pids, not every process.
 */
export function findHolders(
  root: string,
  proc: string,
  nodes: readonly GpuNode[],
  self: number,
  among?: readonly number[],
): GpuHolder[] {
  if (nodes.length === 0) return [];
  const byRdev = new Map<string, string>();
  const byPath = new Set<string>();
  for (const n of nodes) {
    if (n.rdev) byRdev.set(n.rdev, n.path);
    else byPath.add(n.path);
  }
  const rdevCache = new Map<string, string | null>();
  const which = (path: string): string | null => {
    if (!path.startsWith('/dev/')) return null;
    if (byPath.has(path)) return path;
    let rdev = rdevCache.get(path);
    if (rdev === undefined) {
      rdev = rdevOf(root, path);
      rdevCache.set(path, rdev);
    }
    return rdev ? (byRdev.get(rdev) ?? null) : null;
  };

  const out: GpuHolder[] = [];
  for (const pid of among ? [...new Set(among)].sort((a, b) => a - b) : numericEntries(proc)) {
    if (pid === self) continue;
    const dir = join(proc, String(pid));
    const held = new Set<string>();
    for (const fd of listDir(join(dir, 'fd')) ?? []) {
      const target = readlinkOrNull(join(dir, 'fd', fd));
      const node = target ? which(target) : null;
      if (node) held.add(node);
    }
    for (const path of mappedDevPaths(join(dir, 'maps'))) {
      const node = which(path);
      if (node) held.add(node);
    }
    if (held.size === 0) continue;
    out.push({ pid, command: command(dir), ...placeOf(join(dir, 'cgroup')), nodes: [...held].sort() });
  }
  return out;
}

function mappedDevPaths(maps: string): string[] {
  let text: string;
  try {
    text = readFileSync(maps, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const i = line.indexOf(' /dev/');
    if (i >= 0) out.push(line.slice(i + 1).replace(/ \(deleted\)$/, ''));
  }
  return out;
}

function command(dir: string): string {
  try {
    return readFileSync(join(dir, 'comm'), 'utf8').trim() || '?';
  } catch {
    return '?';
  }
}

/** The unit, user manager and session of a process, from its cgroup path (v2, or v1's name=systemd). */
export function placeOf(cgroupFile: string): Pick<GpuHolder, 'unit' | 'userManager' | 'session'> {
  let text: string;
  try {
    text = readFileSync(cgroupFile, 'utf8');
  } catch {
    return { unit: null, userManager: null, session: null };
  }
  const lines = text.split('\n');
  const line = lines.find((l) => l.startsWith('0::')) ?? lines.find((l) => l.includes(':name=systemd:'));
  return placeOfPath(line ? line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1) : '');
}

export function placeOfPath(path: string): Pick<GpuHolder, 'unit' | 'userManager' | 'session'> {
  const parts = path.split('/').filter(Boolean);
  const userManager = parts.find((p) => /^user@\d+\.service$/.test(p)) ?? null;
  const scope = parts.find((p) => /^session-[^/]+\.scope$/.test(p));
  const session = scope ? scope.slice('session-'.length, -'.scope'.length) : null;
  // The innermost unit: a service or scope, not a slice.
  const unit = [...parts].reverse().find((p) => /\.(service|scope)$/.test(p)) ?? null;
  return { unit: unit === userManager && userManager ? null : unit, userManager, session };
}
