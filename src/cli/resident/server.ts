// The resident hook's server (`qemu-hook serve`, qemu-hook.service): listens on the socket, keeps
// one worker started ahead of time (Node up, the program loaded, see worker.ts), hands each
// connection to an idle worker and starts the next. It runs no event itself.
import type { ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { getPriority, constants as osConstants, setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from '../../model/errors.js';
import { childProcess, net } from '../../model/lazy-builtins.js';
import { writeErr } from '../output.js';
import { answerFrame } from './protocol.js';

/** Workers waiting for an event, started ahead of time. */
const SPARE_WORKERS = 1;
/** Workers at most, running and starting: more events at once wait in the socket's queue. */
const MAX_WORKERS = 8;
/** Workers that die before they are ready, one after the other, before the server stops starting them for a while. */
const MAX_FAILED_STARTS = 3;
const RETRY_AFTER_MS = 10_000;

interface Worker {
  readonly child: ChildProcess;
  state: 'starting' | 'idle' | 'busy';
  /** The server's copy of the event's connection, kept to answer for a worker that dies. */
  event?: Socket;
}

export async function runServer(socketArg: string | undefined): Promise<number> {
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const server = net().createServer({ pauseOnConnect: true });
  const where = await listen(server, socketArg ?? join(root, 'run/qemu-hook/hook.sock'));
  // Nothing of systemd's hand-over is for the workers.
  for (const v of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[v];

  const priority = getPriority();
  const entry = process.argv[1] ?? '';
  const blob = join(dirname(dirname(entry)), 'qemu-hook.blob');
  let fromSnapshot = snapshotFits(blob);
  const workers = new Set<Worker>();
  const waiting: Socket[] = [];
  let failedStarts = 0;
  let handedOver = 0;
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
      // A worker rehearsing (rehearsal.ts) runs at a lower priority and takes the event only after
      // its current step: that step runs at the server's priority again, not starved by the load.
      if (worker.child.pid !== undefined) raisePriority(worker.child.pid, priority);
      worker.child.send('run', socket, { keepOpen: true }, (err) => {
        if (!err) return;
        // Not handed over: nothing ran (no 'a'), so the front runs the event itself.
        worker.event = undefined;
        handedOver--;
        socket.destroy();
        worker.child.kill('SIGKILL');
      });
      handedOver++;
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
      writeErr(`qemu-hook serve: stopped; ${handedOver} events handed to workers`);
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

function raisePriority(pid: number, to: number): void {
  try {
    setPriority(pid, to);
  } catch {
    // not root: the worker did not lower it either
  }
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
