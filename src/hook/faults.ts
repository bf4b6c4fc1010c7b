import { readFileSync } from 'node:fs';

/**
 * Crash injection, for the lab and the crash suites: when the file names a point, the hook kills
 * itself with SIGKILL right there, as a power cut or an OOM kill would. libvirt clears the
 * environment, so a file (root-owned, under /etc/qemu-hook) is the only switch a test can reach.
 */
export type FaultPoint = 'record' | 'detach';

export const noFaults = (_point: FaultPoint): void => {};

export function faultsFromFile(path: string): (point: FaultPoint) => void {
  let wanted: string;
  try {
    wanted = readFileSync(path, 'utf8').trim();
  } catch {
    return noFaults;
  }
  return (point) => {
    if (point === wanted) process.kill(process.pid, 'SIGKILL');
  };
}
