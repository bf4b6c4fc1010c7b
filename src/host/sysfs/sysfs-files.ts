import { closeSync, existsSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';

// sysfs attributes are at most one page and the kernel hands them over in one read(): read them
// synchronously into a shared buffer (open, pread, close). Measured on a generated 300-function
// host, fs/promises with every read in flight at once was 5-7 times slower than this (a thread-pool
// round trip per call for work that takes microseconds).
const buffer = Buffer.allocUnsafe(8192);

/** The content of a small file, trailing newline removed. Throws the errno error. */
export function readSmall(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    return buffer.toString('utf8', 0, n > 0 && buffer[n - 1] === 0x0a ? n - 1 : n);
  } finally {
    closeSync(fd);
  }
}

export function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? String(err);
}

/** Collects the non-fatal problems met while reading; a reader never throws for one device. */
export class Warnings {
  readonly list: string[] = [];

  add(message: string): void {
    this.list.push(message);
  }

  /** `what` (a device, a file) could not be read: say whether it vanished or is unreadable. */
  unreadable(what: string, path: string, err: unknown, deviceDir?: string): void {
    const code = errnoCode(err);
    if (deviceDir && code === 'ENOENT' && !existsSync(deviceDir)) {
      this.add(`${what} disappeared while it was being read; skipped`);
    } else {
      this.add(`${what}: cannot read ${path} (${code})`);
    }
  }
}

/** The target of a symlink as written, null when it cannot be read. */
export function readlinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

/** Target name of a symlink ("nvidia" for driver → ../../bus/pci/drivers/nvidia), null when absent. */
export function linkName(path: string): string | null {
  try {
    const target = readlinkSync(path);
    return target.slice(target.lastIndexOf('/') + 1);
  } catch {
    return null;
  }
}

export function listDir(path: string): string[] | null {
  try {
    return readdirSync(path);
  } catch {
    return null;
  }
}

/** The PCI function names ("0000:01:00.0") along a sysfs device path, outermost first. */
export function pciComponents(devicePath: string): string[] {
  return devicePath.split('/').filter((part) => PCI_NAME.test(part));
}

const PCI_NAME = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
