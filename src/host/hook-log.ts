import { mkdirSync } from 'node:fs';
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
    mkdirSync(dirname(file), { recursive: true });
    const dest = pino.destination({ dest: file, sync: true, append: true });
    return pino({ level, base: { pid: process.pid, ...bindings } }, dest) as HookLog;
  } catch {
    return pino({ level: 'silent' }) as HookLog;
  }
}
