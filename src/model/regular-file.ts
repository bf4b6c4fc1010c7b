import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { HostError } from './errors.js';

/**
 * The text of a file root reads and decides on (the config, the state file). O_NONBLOCK: a FIFO in
 * its place opens at once instead of holding the process — these reads are direct system calls, so
 * a wait would hold a hook run, deadline included, and libvirt with it; anything but a regular
 * file is refused with HostError code ENOTREG, its message `<operation> <path>: it is not a regular
 * file (a FIFO, a device or a folder)<why>`. `noFollow`: a link in its place fails with ELOOP.
 * Errors of the open itself are thrown as they are (ENOENT, ELOOP, …) for the caller to word.
 */
export function readRegularFile(
  path: string,
  options: { operation: string; why: string; noFollow?: boolean },
): string {
  const fd = openSync(
    path,
    constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0),
  );
  try {
    if (!fstatSync(fd).isFile())
      throw new HostError(
        options.operation,
        path,
        'ENOTREG',
        `it is not a regular file (a FIFO, a device or a folder)${options.why}`,
      );
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
