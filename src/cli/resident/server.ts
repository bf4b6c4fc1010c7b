// The resident hook's server (`qemu-hook serve`, qemu-hook.service): keeps workers started ahead
// of time (Node up, the program loaded, see worker.ts) listening on the hook socket. A worker
// accepts one connection itself and runs that event; the server starts the next worker (once the
// event is over, while another waits for the next) and answers for a worker that dies in the
// middle of its event. It accepts nothing and runs no event: a connection handed from the server
// to a worker cost two process wake-ups and Node's handle passing (the front's wait for the
// worker's first byte: 3-6 ms on the bench's machine, 1.1-1.7 ms since).
//
// The socket is fd 3: systemd's (qemu-hook.socket) when socket-activated. Run by hand, `serve`
// does what systemd does: it makes the socket and starts the server with it as fd 3, then stays
// as its parent (passing SIGTERM and SIGINT on, removing the socket when the server ends). A
// socket Node listens on is one it accepts on, so the process that keeps it for the workers must
// never have listened on it itself.
import type { ChildProcess } from 'node:child_process';
import { fstatSync, lstatSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { programSnapshot, snapshotFit, snapshotNote } from '../../host/startup-snapshot.js';
import { UsageError } from '../../model/errors.js';
import { childProcess, net } from '../../model/lazy-builtins.js';
import { writeErr, writeFully } from '../output.js';
import { removeLeftBehind } from './private-folder.js';
import { answerFrame, LISTEN_FD } from './protocol.js';

/** Set by `serve` for the server it starts: fd 3 is the socket (systemd's LISTEN_PID cannot name a pid not yet known). */
const LISTEN_FD_ENV = 'QEMU_HOOK_LISTEN_FD';
/**
 * Workers waiting for an event, started ahead of time. Two: events often come one right after
 * the other (a start's prepare, start and started with per-VM scripts; a stop after a failed
 * start), and with one the second waited for a worker's start (back to back on the bench's host:
 * a release 55 -> 42 ms, the event after it 52 -> 24 ms). Each costs an idle Node (~64 MB RSS).
 */
const SPARE_WORKERS = 2;
/**
 * No event for this long (since the worker was ready, or since the last event ended): then a
 * waiting worker that listens may rehearse (one held back from listening may at once).
 */
const QUIET_MS = 1000;
/** How long a taken worker's replacement waits for its event to end, when another worker is waiting. */
const REPLACE_AFTER_MS = 2_000;
/** Workers at most, running and starting: more events at once wait in the socket's queue. */
const MAX_WORKERS = 8;
/** Workers that die before they are ready, one after the other, before the server stops starting them for a while. */
const MAX_FAILED_STARTS = 3;
const RETRY_AFTER_MS = 10_000;

/** The raw handle of an event's connection: the server's copy, to answer for a worker that dies. */
interface EventHandle {
  readonly fd: number;
  close(): void;
}

interface Worker {
  readonly child: ChildProcess;
  state: 'starting' | 'idle' | 'busy';
  /** Polls the hook socket (an idle worker): it has rehearsed, or was told to as no other did. */
  listening: boolean;
  /** When it said it was ready (Date.now()). */
  readyAt: number;
  event?: EventHandle;
}

export async function runServer(socketArg: string | undefined): Promise<number> {
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const path = socketArg ?? join(root, 'run/qemu-hook/hook.sock');
  const where = inheritedSocket(path);
  if (where === null) return runLauncher(path);
  // Nothing of systemd's (or the launcher's) hand-over is for the workers.
  for (const v of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', LISTEN_FD_ENV]) delete process.env[v];

  const entry = process.argv[1] ?? '';
  const blob = programSnapshot();
  const fit = snapshotFit(blob);
  let fromSnapshot = fit === 'fits';
  // Workers then start from the code cache: slower, not wrong; said once, in the service's log.
  const stale = snapshotNote(fit);
  if (stale) writeErr(`qemu-hook serve: ${stale}`);
  const workers = new Set<Worker>();
  let failedStarts = 0;
  let taken = 0;
  let pausedUntil = 0;
  let stopping = false;

  const count = (state: Worker['state']) => [...workers].filter((w) => w.state === state).length;
  // One waiting worker rehearses at a time (rehearsal.ts): the others wait their turn, in order.
  let rehearsing: Worker | null = null;
  let turns: Worker[] = [];
  let lastEventEnd = 0;
  let turnLater: NodeJS.Timeout | undefined;
  const nextTurn = (): void => {
    if (rehearsing && workers.has(rehearsing) && rehearsing.state === 'idle') return;
    rehearsing = null;
    // Not beside an event: the machine's CPUs are the event's (a worker's exit calls this again).
    if (count('busy') > 0) return;
    turns = turns.filter((w) => workers.has(w) && w.state === 'idle');
    const now = Date.now();
    let soonest = Number.POSITIVE_INFINITY;
    for (const w of turns) {
      // A worker that listens rehearses after a quiet second (an event that follows another, such
      // as the release after a failed start, finds it between steps); one held back at once.
      const quiet = now - Math.max(lastEventEnd, w.readyAt);
      if (w.listening && quiet < QUIET_MS) {
        soonest = Math.min(soonest, QUIET_MS - quiet);
        continue;
      }
      turns = turns.filter((t) => t !== w);
      try {
        w.child.send('rehearse');
        rehearsing = w;
        return;
      } catch {
        // its channel is closed: it is leaving
      }
    }
    if (soonest < Number.POSITIVE_INFINITY) {
      clearTimeout(turnLater);
      turnLater = setTimeout(nextTurn, soonest).unref();
    }
  };

  // A waiting worker listens on the hook socket once it has rehearsed (worker.ts): the event then
  // goes to a warm one. One of them always listens: when none does, the server tells one to, one
  // that is not in the middle of a rehearsal's step if it can.
  const keepOneListening = (): void => {
    const idle = [...workers].filter((w) => w.state === 'idle');
    if (idle.length === 0 || idle.some((w) => w.listening)) return;
    const chosen = idle.find((w) => w !== rehearsing) ?? idle[0]!;
    try {
      chosen.child.send('listen');
      chosen.listening = true;
    } catch {
      // its channel is closed: it is leaving (its exit calls this again)
    }
  };

  const start = (): void => {
    const args = fromSnapshot ? ['--snapshot-blob', blob, 'serve', '--worker'] : [entry, 'serve', '--worker'];
    const child = childProcess().spawn(process.execPath, args, {
      stdio: ['ignore', 'inherit', 'inherit', LISTEN_FD, 'ipc'],
      env: process.env,
    });
    const worker: Worker = { child, state: 'starting', listening: false, readyAt: 0 };
    workers.add(worker);
    child.on('message', (m, handle) => {
      if (m === 'rehearse?' && worker.state === 'idle') {
        turns.push(worker);
        nextTurn();
        return;
      }
      if (m === 'rehearsed') {
        if (rehearsing === worker) rehearsing = null;
        worker.listening = true; // it listens once rehearsed
        nextTurn();
        return;
      }
      if (m === 'ready' && worker.state === 'starting') {
        worker.state = 'idle';
        worker.readyAt = Date.now();
        failedStarts = 0;
        keepOneListening();
      } else if (m === 'took' && worker.state === 'idle') {
        worker.state = 'busy';
        keepOneListening();
        nextTurn(); // its rehearsal, if it had the turn, stopped with the event
        worker.event = handle as unknown as EventHandle | undefined;
        taken++;
        // While another worker waits for the next event, the one taken is replaced once its
        // event is over (its exit), or after REPLACE_AFTER_MS: a Node starting beside the event
        // took CPU from it (on the bench's 2-CPU host a rehearsed start's run 54 -> 45 ms).
        if (count('idle') > 0) {
          setTimeout(() => replenish(0), REPLACE_AFTER_MS).unref();
          return;
        }
        // No worker left waiting. Events that overlap (another worker is still busy with one) may
        // be the start of a burst: the server sees none of the socket's queue, so each such take
        // starts one worker more than the spare, and a burst gets its workers started side by
        // side. One event after another starts just the spares.
        replenish(count('busy') > 1 ? 1 : 0);
        return;
      }
      replenish(0);
    });
    child.on('error', () => {}); // its exit follows and says what matters
    child.on('exit', (code, signal) => {
      workers.delete(worker);
      // Killed (SIGKILL runs none of its exit handlers): what its rehearsal had under way is left.
      if (signal && child.pid !== undefined) removeLeftBehind(child.pid);
      if (worker.state === 'busy') lastEventEnd = Date.now();
      keepOneListening();
      nextTurn();
      // A worker that ends without answering (killed in the middle of the event): its front
      // answers libvirt with the status the front would see from a Node it started itself (128 +
      // the signal). One that answered has its front gone already: the frames reach no one.
      if (worker.event) {
        const status = exitStatus(code, signal);
        const line = `qemu-hook: the hook's run ended without an answer (${signal ?? `exit ${code}`}); what it took is in the state file: libvirt's release or qemu-hook recover gives it back\n`;
        try {
          writeFully(worker.event.fd, answerFrame('e', Buffer.from(line)));
          writeFully(worker.event.fd, answerFrame('x', Buffer.from([status & 0xff])));
        } catch {
          // the front is gone
        }
        worker.event.close();
      }
      if (worker.state === 'starting') {
        // Node rejected the snapshot (exit 14): from the code cache from now on, as hooks/qemu does.
        if (fromSnapshot && code === 14) fromSnapshot = false;
        else failedStarts++;
        if (failedStarts >= MAX_FAILED_STARTS) {
          pausedUntil = Date.now() + RETRY_AFTER_MS;
          writeErr(
            `qemu-hook serve: ${failedStarts} workers died before they were ready (last exit ${code}); for ${RETRY_AFTER_MS / 1000} s the hook front runs events itself (after waiting 5 s for a worker)`,
          );
          failedStarts = 0;
          setTimeout(() => replenish(0), RETRY_AFTER_MS).unref();
        }
      }
      replenish(0);
    });
  };

  /** Keeps SPARE_WORKERS (+ `extra`) listening or on their way, within MAX_WORKERS. */
  const replenish = (extra: number): void => {
    if (stopping || Date.now() < pausedUntil) return;
    const want = SPARE_WORKERS + extra - count('starting') - count('idle');
    for (let i = 0; i < want && workers.size < MAX_WORKERS; i++) start();
  };

  replenish(0);
  writeErr(`qemu-hook serve: answering hook events on ${where}`);

  return new Promise((resolve) => {
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      writeErr(`qemu-hook serve: stopped; ${taken} events taken by workers`);
      // Idle and starting workers go; one running an event finishes it (its own process).
      for (const w of workers) if (w.state !== 'busy') w.child.kill('SIGTERM');
      resolve(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // Started by `serve` (the launcher): its end is ours.
    process.on('disconnect', stop);
  });
}

/** Where the inherited socket is, for the log; null when this process has none (then it makes one). */
function inheritedSocket(path: string): string | null {
  const systemd =
    process.env['LISTEN_PID'] === String(process.pid) && Number(process.env['LISTEN_FDS'] ?? 0) >= 1;
  const launcher = process.env[LISTEN_FD_ENV] === String(LISTEN_FD);
  if (!systemd && !launcher) return null;
  let socket = false;
  try {
    socket = fstatSync(LISTEN_FD).isSocket();
  } catch {
    // not open
  }
  if (!socket) throw new UsageError(`serve: fd ${LISTEN_FD} is not the hook socket it was started with`);
  return systemd ? "systemd's socket" : path;
}

/**
 * `serve` run by hand: makes the socket (mode 600, folder 700) and starts the server with it as fd
 * 3, as systemd would; passes SIGTERM and SIGINT on and ends with the server, removing the socket.
 */
async function runLauncher(path: string): Promise<number> {
  const listening = await makeSocket(path);
  const made = lstatSync(path);
  let child: ChildProcess;
  try {
    child = childProcess().spawn(
      process.execPath,
      [...process.execArgv, process.argv[1] ?? '', 'serve', path],
      {
        stdio: ['ignore', 'inherit', 'inherit', handleFd(listening), 'ipc'],
        env: { ...process.env, [LISTEN_FD_ENV]: String(LISTEN_FD) },
      },
    );
  } finally {
    // The server has its copy: this one stops here, before it could accept anything (closing it
    // removes only the name it was made under, see makeSocket).
    listening.close();
  }
  const pass = (signal: NodeJS.Signals) => () => child.kill(signal);
  process.on('SIGTERM', pass('SIGTERM'));
  process.on('SIGINT', pass('SIGINT'));
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => {});
    child.on('exit', (c, signal) => resolve(exitStatus(c, signal)));
  });
  try {
    const now = lstatSync(path);
    if (now.isSocket() && now.ino === made.ino && now.dev === made.dev) unlinkSync(path);
  } catch {
    // gone already
  }
  return code;
}

/**
 * Listens on `path` (folder 700 and this user's, socket 600). Made under a temporary name and
 * renamed into place: Node removes a socket's name when it closes it, and this process closes its
 * copy right after the server has one.
 */
async function makeSocket(path: string): Promise<Server> {
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
  const temporary = `${path}.${process.pid}.new`;
  const server = net().createServer();
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(temporary, resolve);
    });
  } finally {
    process.umask(umask);
  }
  renameSync(temporary, path);
  return server;
}

/** What a shell would say of a child's end: its exit code, or 128 + the signal that ended it. */
function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  return signal ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1);
}

function handleFd(server: Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the hook socket has no descriptor');
  return fd;
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
