import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelModule } from '../../model/handover.js';
import { listDir, readSmall } from '../sysfs/sysfs-files.js';

/**
 * A module as /sys/module shows it: a loadable one has `refcnt` (and `holders/`); a built-in one
 * appears only when it has parameters, and has no refcnt.
 */
export function readModule(sys: string, name: string): KernelModule {
  const dir = join(sys, 'module', name);
  if (!existsSync(dir))
    return { name, loaded: false, builtin: false, refcnt: null, holders: [], parameters: {} };
  let refcnt: number | null = null;
  try {
    refcnt = Number(readSmall(join(dir, 'refcnt')).trim());
  } catch {
    refcnt = null;
  }
  const parameters: Record<string, string> = {};
  let names: string[] = [];
  try {
    names = readdirSync(join(dir, 'parameters'));
  } catch {
    names = [];
  }
  for (const p of names.sort()) {
    try {
      parameters[p] = readSmall(join(dir, 'parameters', p)).trim();
    } catch {
      // write-only or unreadable: modprobe's own config sets it again
    }
  }
  return {
    name,
    loaded: true,
    builtin: refcnt === null,
    refcnt,
    holders: (listDir(join(dir, 'holders')) ?? []).filter((h) => !h.startsWith('.')).sort(),
    parameters,
  };
}
