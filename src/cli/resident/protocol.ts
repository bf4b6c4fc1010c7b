// The resident hook's protocol between hooks/qemu's client (native/hook-client.c) and a worker of
// `qemu-hook serve`, which accepts on the hook socket itself (all lengths 32-bit big-endian):
//   worker → front  'a'                    the event is taken; before it, nothing has run and the
//                                          front runs the hook itself (hooks/qemu's fallback)
//   front → worker  items [len][bytes]:    "qemu-hook/1", argc, each argument, envc, each
//                                          NAME=value of the front's environment, the XML on stdin
//                                          in pieces, an empty item to end. A worker runs only a
//                                          complete request.
//   worker → front  frames [type][len][bytes]: 'o' stdout, 'e' stderr, 'x' the exit status (1 byte)
import type { Socket } from 'node:net';

export const PROTOCOL = 'qemu-hook/1';
/** The listening socket's descriptor in the server and in every worker, as systemd passes it. */
export const LISTEN_FD = 3;
/** A front that does not send its event within this long is dropped (its worker ran nothing). */
const REQUEST_MS = 30_000;
const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/** One frame of the answer: its type ('o' stdout, 'e' stderr, 'x' exit status), length, bytes. */
export function answerFrame(type: 'o' | 'e' | 'x', data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

export interface EventRequest {
  readonly args: readonly string[];
  /** The front's environment ("NAME=value"): libvirt's, as a per-event hook process has it. */
  readonly env: readonly string[];
  readonly stdin: string;
}

/** The front's request from `socket`; null when it left (or stalled) before it was complete. */
export function readRequest(socket: Socket): Promise<EventRequest | null> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const done = (r: EventRequest | null): void => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.pause();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), REQUEST_MS);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > MAX_REQUEST_BYTES) return done(null);
      const parsed = parseRequest(buffered);
      if (parsed) done(parsed);
    });
    socket.once('end', () => done(parseRequest(buffered)));
    socket.once('close', () => done(parseRequest(buffered)));
    socket.resume();
  });
}

/** A request as the front's client sends it (the rehearsal's, and tests'): items, then the empty one. */
export function requestBytes(args: readonly string[], env: readonly string[], stdin: string): Buffer {
  const item = (text: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(bytes.length);
    return Buffer.concat([head, bytes]);
  };
  const items = [PROTOCOL, String(args.length), ...args, String(env.length), ...env];
  return Buffer.concat([...items.map(item), ...(stdin ? [item(stdin)] : []), item('')]);
}

/** The request in `data`, or null while (or if) it is not complete. */
export function parseRequest(data: Buffer): EventRequest | null {
  const items: Buffer[] = [];
  for (let at = 0; at + 4 <= data.length; ) {
    const len = data.readUInt32BE(at);
    if (at + 4 + len > data.length) return null;
    items.push(data.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  const count = (item: Buffer | undefined) =>
    item && /^\d{1,4}$/.test(item.toString('latin1')) ? Number(item.toString('latin1')) : null;
  if (items[0]?.toString('latin1') !== PROTOCOL) return null;
  const argc = count(items[1]);
  if (argc === null) return null;
  const envc = count(items[2 + argc]);
  if (envc === null) return null;
  const stdinFrom = 3 + argc + envc;
  // The XML's pieces follow; an empty item after them ends the request.
  const end = items.findIndex((item, i) => i >= stdinFrom && item.length === 0);
  if (end < 0) return null;
  return {
    args: items.slice(2, 2 + argc).map((b) => b.toString('utf8')),
    env: items.slice(3 + argc, stdinFrom).map((b) => b.toString('utf8')),
    stdin: Buffer.concat(items.slice(stdinFrom, end)).toString('utf8'),
  };
}
