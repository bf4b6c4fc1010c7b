import { constants, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';

export type HookLog = ReturnType<typeof pino> & { flush(): void };

/**
 * The hook's log: JSON lines in a file, synchronous so nothing is lost when the hook exits right
 * after. Never stdout (libvirt reads it for migrate/restore) and never stderr (the user sees that
 * on failure). A log that cannot be opened must not stop a VM: the hook then logs nowhere.
 */
export function openHookLog(file: string, level: string, bindings: object): HookLog {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const dest = pino.destination({ fd: openAppendNoFollow(file), sync: true });
    return pino({ level, base: { pid: process.pid, ...bindings } }, dest) as HookLog;
  } catch {
    return pino({ level: 'silent' }) as HookLog;
  }
}

/**
 * Opens a log for appending without following a link in its place: root writes the logs, and a
 * planted link would make it append to any file. 0640: logs name devices and domains.
 */
export function openAppendNoFollow(file: string): number {
  return openSync(
    file,
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
    0o640,
  );
}
