import { closeSync, constants, fstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';

export type HookLog = ReturnType<typeof pino> & { flush(): void };

/**
 * The hook's log: JSON lines in a file, synchronous so nothing is lost when the hook exits right
 * after. Never stdout (libvirt reads it for migrate/restore) and never stderr (the user sees that
 * on failure). A log that cannot be opened must not stop a VM: the hook then logs nowhere.
 *
 * Each line carries its level as a word and the bound fields (domain, op, subop) once: a field a
 * call repeats with the same value is left out. `qemu-hook log` renders the lines for a person.
 */
export function openHookLog(file: string, level: string, bindings: Record<string, unknown>): HookLog {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    return hookLogger(pino.destination({ fd: openAppendNoFollow(file), sync: true }), level, bindings);
  } catch {
    return pino({ level: 'silent' }) as HookLog;
  }
}

/** The hook's log as it formats its lines, writing them nowhere (the resident hook's rehearsal). */
export function rehearsalLog(): HookLog {
  return hookLogger({ write: () => {} }, 'info', { domain: '', op: '', subop: '' });
}

function hookLogger(
  dest: Parameters<typeof pino>[1] & object,
  level: string,
  bindings: Record<string, unknown>,
): HookLog {
  return pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => withoutBound(obj, bindings),
      },
    },
    dest,
  ) as HookLog;
}

function withoutBound(
  obj: Record<string, unknown>,
  bindings: Record<string, unknown>,
): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const key in bindings) {
    if (key in obj && obj[key] === bindings[key]) {
      out ??= { ...obj };
      delete out[key];
    }
  }
  return out ?? obj;
}

/**
 * Opens a log for appending without following a link in its place: root writes the logs, and a
 * planted link would make it append to any file. 0640: logs name devices and domains.
 */
export function openAppendNoFollow(file: string): number {
  // O_NONBLOCK: a FIFO in the log's place fails to open (no reader) instead of holding the run,
  // deadline included; anything else that is not a regular file is refused. A regular file's
  // writes ignore the flag.
  const fd = openSync(
    file,
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    0o640,
  );
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new Error(`${file} is not a regular file`);
  }
  return fd;
}
