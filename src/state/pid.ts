import { readFileSync } from 'node:fs';

/** process.kill(pid, 0): ESRCH means gone; EPERM means alive but someone else's. */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When the process started, in clock ticks after boot (/proc/<pid>/stat field 22), as text; null
 * when it cannot be read. A pid is reused once its process is gone: the pair (pid, start) is not.
 * This is the /proc of the processes themselves, not a host root: pids are never a fixture.
 */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces and ')': skip past the last.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall; fields[0] is field 3
  } catch {
    return null;
  }
}

/** Alive, and still the process that `start` describes (null: the start was not recorded). */
export function isSameProcess(pid: number, start: string | null): boolean {
  if (!isAlive(pid)) return false;
  if (start === null) return processStart(process.pid) === null; // without /proc, life is all we know
  const now = processStart(pid);
  return now === null || now === start;
}
