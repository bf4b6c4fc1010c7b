import { appendFileSync, readFileSync } from 'node:fs';
import { type FaultMode, type FaultSwitch, isFaultPoint } from '../model/faults.js';

/**
 * The fault-injection file (`/etc/qemu-hook/fault-injection`, root-owned: libvirt clears the
 * environment, so a file is the only switch a test can reach). One rule a line:
 *
 *     <point>[#<n>] [kill|enospc|eio|torn]     the n-th time (default: the first) the run meets
 *                                              the point; default mode kill
 *     trace                                    append each point met to `<file>.trace`
 *
 * `record` and `detach` alone are what the lab writes. Unknown lines are ignored: the file is a
 * test instrument and must never break a real hook run.
 */
export function faultsFromFile(path: string): FaultSwitch | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const rules = new Map<string, FaultMode>();
  let trace = false;
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] === 'trace') trace = true;
    const m = /^([a-z-]+)(?:#(\d+))?$/.exec(words[0] ?? '');
    const mode = (words[1] ?? 'kill') as FaultMode;
    if (!m || !isFaultPoint(m[1]!) || !['kill', 'enospc', 'eio', 'torn'].includes(mode)) continue;
    rules.set(`${m[1]}#${m[2] ?? '1'}`, mode);
  }
  const met = new Map<string, number>();
  return (point, partialWrite) => {
    const n = (met.get(point) ?? 0) + 1;
    met.set(point, n);
    if (trace) appendFileSync(`${path}.trace`, `${point}\n`);
    const mode = rules.get(`${point}#${n}`);
    if (!mode) return;
    if (mode !== 'kill') partialWrite?.();
    if (mode === 'kill' || mode === 'torn') {
      process.kill(process.pid, 'SIGKILL');
      return;
    }
    const code = mode === 'enospc' ? 'ENOSPC' : 'EIO';
    throw Object.assign(new Error(`${code}: injected fault at ${point}`), { code });
  };
}
