// `qemu-hook serve`: the resident hook. Starting Node is most of what a hook event costs (the
// program's own work on a start or a stop is a few tens of milliseconds, Node's start alone as
// much again or more). This process keeps one worker started ahead of time: Node up, the program
// loaded, waiting. hooks/qemu hands each event to it through a Unix socket (native/hook-client.c);
// the worker runs the event exactly as the per-event process would (the same runHookFromCli, its
// own process, its own deadline, its own exit) and then exits; a new one is already starting.
//
// One process per event, as before: nothing of one event (a lock, a deadline, a fault switch, a
// module's state) outlives it, and a worker killed in the middle is a hook killed in the middle,
// which the write-ahead records already make safe. Only the waiting for Node moved.
//
// The socket: systemd's (qemu-hook.socket, root's, mode 600 in a 700 folder) when socket-activated,
// else <root>/run/qemu-hook/hook.sock made here the same way. Whoever can connect can run the hook,
// which only root (or, under a fixture root, its owner) may.
//
// Protocol (all lengths 32-bit big-endian):
//   worker → front  'a'                    the event is taken; before it, nothing has run and the
//                                          front runs the hook itself (hooks/qemu's fallback)
//   front → worker  items [len][bytes]:    "qemu-hook/1", argc, each argument, the XML on stdin in
//                                          pieces, an empty item to end. A worker runs only a
//                                          complete request.
//   worker → front  frames [type][len][bytes]: 'o' stdout, 'e' stderr, 'x' the exit status (1 byte)
import type { ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { parseConfigAhead } from '../../config/load.js';
import { hostName } from '../../host/hostname.js';
import { PciIds } from '../../host/pci-ids.js';
import { UsageError } from '../../model/errors.js';
import { childProcess, net } from '../../model/lazy-builtins.js';
import { hostPaths } from '../../model/paths.js';
import { reportError } from '../exit.js';
import { redirectOutput, STDOUT, writeErr, writeFully } from '../output.js';

export const PROTOCOL = 'qemu-hook/1';
/** Workers waiting for an event, started ahead of time. */
const SPARE_WORKERS = 1;
/** Workers at most, running and starting: more events at once wait in the socket's queue. */
const MAX_WORKERS = 8;
/** Workers that die before they are ready, one after the other, before the server stops starting them for a while. */
const MAX_FAILED_STARTS = 3;
const RETRY_AFTER_MS = 10_000;
/** A front that does not send its event within this long is dropped (its worker ran nothing). */
const REQUEST_MS = 30_000;
const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

export async function runServe(positionals: readonly string[]): Promise<number> {
  if (positionals[0] === '--worker') return runWorker();
  if (positionals.length > 1 || positionals[0]?.startsWith('-'))
    throw new UsageError('usage: qemu-hook serve [SOCKET] (systemd starts it as qemu-hook.service)');
  return runServer(positionals[0]);
}

// --- the server ----------------------------------------------------------------------------------

interface Worker {
  readonly child: ChildProcess;
  state: 'starting' | 'idle' | 'busy';
  /** The server's copy of the event's connection, kept to answer for a worker that dies. */
  event?: Socket;
}

async function runServer(socketArg: string | undefined): Promise<number> {
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const server = net().createServer({ pauseOnConnect: true });
  const where = await listen(server, socketArg ?? join(root, 'run/qemu-hook/hook.sock'));
  // Nothing of systemd's hand-over is for the workers.
  for (const v of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[v];

  const entry = process.argv[1] ?? '';
  const blob = join(dirname(dirname(entry)), 'qemu-hook.blob');
  let fromSnapshot = snapshotFits(blob);
  const workers = new Set<Worker>();
  const waiting: Socket[] = [];
  let failedStarts = 0;
  let pausedUntil = 0;

  const count = (state: Worker['state']) => [...workers].filter((w) => w.state === state).length;

  const start = (): void => {
    const args = fromSnapshot ? ['--snapshot-blob', blob, 'serve', '--worker'] : [entry, 'serve', '--worker'];
    const child = childProcess().spawn(process.execPath, args, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: process.env,
    });
    const worker: Worker = { child, state: 'starting' };
    workers.add(worker);
    child.on('message', (m) => {
      if (m !== 'ready' || worker.state !== 'starting') return;
      worker.state = 'idle';
      failedStarts = 0;
      dispatch();
    });
    child.on('error', () => {}); // its exit follows and says what matters
    child.on('exit', (code, signal) => {
      workers.delete(worker);
      // A worker that ends without answering (killed in the middle of the event): its front
      // answers libvirt with the status the front would see from a Node it started itself (128 +
      // the signal). One that answered has its front gone already: the frame reaches no one.
      if (worker.event) {
        const status = signal ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1);
        const line = `qemu-hook: the hook's run ended without an answer (${signal ?? `exit ${code}`}); what it took is in the state file: libvirt's release or qemu-hook recover gives it back\n`;
        worker.event.write(answerFrame('e', Buffer.from(line)));
        worker.event.end(answerFrame('x', Buffer.from([status & 0xff])));
      }
      if (worker.state === 'starting') {
        // Node rejected the snapshot (exit 14): from the code cache from now on, as hooks/qemu does.
        if (fromSnapshot && code === 14) fromSnapshot = false;
        else failedStarts++;
        if (failedStarts >= MAX_FAILED_STARTS) {
          pausedUntil = Date.now() + RETRY_AFTER_MS;
          writeErr(
            `qemu-hook serve: ${failedStarts} workers died before they were ready (last exit ${code}); the hook front runs events itself for ${RETRY_AFTER_MS / 1000} s`,
          );
          // Closed before 'a': their fronts run the hook themselves.
          for (const s of waiting.splice(0)) s.destroy();
          failedStarts = 0;
        }
      }
      dispatch();
    });
  };

  const dispatch = (): void => {
    for (;;) {
      const worker = [...workers].find((w) => w.state === 'idle');
      const socket = waiting.shift();
      if (!worker || !socket) {
        if (socket) waiting.unshift(socket);
        break;
      }
      if (socket.destroyed) continue;
      worker.state = 'busy';
      worker.event = socket;
      worker.child.send('run', socket, { keepOpen: true }, (err) => {
        if (err) socket.destroy();
      });
    }
    if (Date.now() < pausedUntil) {
      for (const s of waiting.splice(0)) s.destroy();
      return;
    }
    const ready = count('starting') + count('idle');
    const room = MAX_WORKERS - workers.size;
    for (let i = 0; i < Math.min(room, SPARE_WORKERS + waiting.length - ready); i++) start();
  };

  server.on('connection', (socket: Socket) => {
    socket.on('error', () => {});
    waiting.push(socket);
    dispatch();
  });
  dispatch();
  writeErr(`qemu-hook serve: answering hook events on ${where}`);

  return new Promise((resolve) => {
    const stop = (): void => {
      server.close();
      // Idle and starting workers go; one running an event finishes it (its own process).
      for (const w of workers) if (w.state !== 'busy') w.child.kill('SIGTERM');
      resolve(0);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

/** Listens on systemd's socket when started by it, else makes `path` (mode 600, folder 700). */
async function listen(server: Server, path: string): Promise<string> {
  const listenFds = Number(process.env['LISTEN_FDS'] ?? 0);
  if (process.env['LISTEN_PID'] === String(process.pid) && listenFds >= 1) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd: 3 }, resolve);
    });
    return "systemd's socket";
  }
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    throw new UsageError(
      `${dir} must be a folder of this user's that no one else can enter: chown ${uid} ${dir} && chmod 700 ${dir}`,
    );
  try {
    if (!lstatSync(path).isSocket()) throw new UsageError(`${path} exists and is not a socket: remove it`);
    if (await answers(path)) throw new UsageError(`another qemu-hook serve answers on ${path}`);
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
  } finally {
    process.umask(umask);
  }
  return path;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net().connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Whether the snapshot was made for this node binary on this CPU (hooks/qemu's snapshot_fits). */
function snapshotFits(blob: string): boolean {
  try {
    if (!existsSync(blob)) return false;
    const [node, cpu] = readFileSync(`${blob}.node`, 'utf8').split('\n');
    const st = statSync(process.execPath);
    if (node !== `${st.size} ${Math.floor(st.mtimeMs / 1000)}`) return false;
    const flags = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return flags === cpu;
  } catch {
    return false;
  }
}

// --- a worker ------------------------------------------------------------------------------------

/** Waits for one event from the server, runs it, exits (through runProgram, with its status). */
function runWorker(): Promise<number> {
  if (!process.send) throw new UsageError('serve --worker is started by qemu-hook serve, not by hand');
  return new Promise((resolve) => {
    let taken = false;
    process.on('message', (m, handle) => {
      if (m !== 'run' || taken || !handle) return;
      taken = true;
      // From here on this process is the event's, whatever becomes of the server.
      process.disconnect?.();
      void runEvent(handle as Socket).then(resolve);
    });
    process.on('disconnect', () => {
      if (!taken) resolve(0); // the server went away before it had an event for us
    });
    // While waiting: the config parsed and pci.ids indexed, for the event to use if the files
    // still read the same (both are functions of the text alone).
    const paths = hostPaths(process.env['QEMU_HOOK_ROOT'] || '/');
    parseConfigAhead(paths.configFile, { host: hostName(paths) });
    PciIds.indexAhead(paths.pciIdsCandidates);
    process.send?.('ready');
  });
}

async function runEvent(socket: Socket): Promise<number> {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    socket.destroy();
    return 1;
  }
  let connected = true;
  const frame = (type: 'a' | 'o' | 'e' | 'x', data: Buffer = Buffer.alloc(0)): void => {
    if (!connected) return;
    try {
      writeFully(fd, type === 'a' ? Buffer.from('a') : answerFrame(type, data));
    } catch {
      // The front is gone (libvirt killed it?): the event still runs to its end, unheard.
      connected = false;
    }
  };
  frame('a');
  const request = await readRequest(socket);
  if (!request) return 0; // the front left before handing the event over: nothing ran
  redirectOutput((which, data) => frame(which === STDOUT ? 'o' : 'e', data));
  process.once('exit', (code) => frame('x', Buffer.from([code & 0xff])));
  try {
    const { runHookFromCli } = await import('./hook.js');
    return await runHookFromCli(request.args, { xml: request.stdin, resident: true });
  } catch (err) {
    return reportError(err, false, writeErr);
  }
}

/** One frame of the answer: its type ('o' stdout, 'e' stderr, 'x' exit status), length, bytes. */
function answerFrame(type: 'o' | 'e' | 'x', data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

interface EventRequest {
  readonly args: readonly string[];
  readonly stdin: string;
}

function readRequest(socket: Socket): Promise<EventRequest | null> {
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

/** The request in `data`, or null while (or if) it is not complete. */
export function parseRequest(data: Buffer): EventRequest | null {
  const items: Buffer[] = [];
  let at = 0;
  let argc = -1;
  while (at + 4 <= data.length) {
    const len = data.readUInt32BE(at);
    if (at + 4 + len > data.length) return null;
    const item = data.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    if (items.length === 0 && item.toString('latin1') !== PROTOCOL) return null;
    if (items.length === 1) {
      argc = /^\d{1,3}$/.test(item.toString('latin1')) ? Number(item.toString('latin1')) : -1;
      if (argc < 0) return null;
    }
    if (items.length >= 2 + argc && argc >= 0 && len === 0) {
      const args = items.slice(2, 2 + argc).map((b) => b.toString('utf8'));
      return { args, stdin: Buffer.concat(items.slice(2 + argc)).toString('utf8') };
    }
    items.push(item);
  }
  return null;
}
