import { writeSync } from 'node:fs';
import { exitProcess } from '../host/libvirt/loader.js';
import { tty } from '../model/lazy-builtins.js';

// The CLI writes straight to file descriptors 1 and 2. process.stdout/stderr/stdin are streams
// that Node builds on first touch (for a pipe: a net.Socket, loading the net and stream modules):
// 7-10 ms of every start, and each VM event starts this program several times. A write to a
// descriptor is also what libvirt's hook protocol wants: whole, in order, before the exit.

export const STDOUT = 1;
export const STDERR = 2;

/**
 * Where the resident hook's worker sends the program's output instead (cli/resident/worker.ts): to
 * the hook front's connection, as frames. Null: descriptors 1 and 2 of this process.
 */
type OutputSink = (fd: typeof STDOUT | typeof STDERR, data: Buffer) => void;
let sink: OutputSink | null = null;

export function redirectOutput(to: OutputSink): void {
  sink = to;
}

/** Writes all of `text` to `fd`. A reader that went away (EPIPE) ends the program quietly. */
export function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text, 'utf8');
  if (sink && (fd === STDOUT || fd === STDERR)) {
    sink(fd, data);
    return;
  }
  try {
    writeFully(fd, data);
  } catch (err) {
    // `qemu-hook devices | head`: not an error of ours.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') exitProcess(Number(process.exitCode ?? 0));
    throw err;
  }
}

/** Writes all of `bytes` to the descriptor `fd`, waiting out a non-blocking one's EAGAIN. */
export function writeFully(fd: number, bytes: Buffer): void {
  let data = bytes;
  while (data.length > 0) {
    try {
      data = data.subarray(writeSync(fd, data));
    } catch (err) {
      // A descriptor left non-blocking by whoever opened it (or a socket): wait for the reader.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      pause(1);
    }
  }
}

export const writeOut = (line: string): void => writeAll(STDOUT, `${line}\n`);
export const writeErr = (line: string): void => writeAll(STDERR, `${line}\n`);

/** Whether a person is at the keyboard: stdin and stdout both terminals. */
export function interactive(): boolean {
  const { isatty } = tty();
  return isatty(0) && isatty(1);
}

// Made on first use: there is no SharedArrayBuffer while a startup snapshot is built.
let sleeper: Int32Array | undefined;
function pause(ms: number): void {
  sleeper ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleeper, 0, 0, ms);
}
