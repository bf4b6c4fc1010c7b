// A worker of the resident hook: started by the server before any event, it parses the config and
// indexes pci.ids, rehearses the event (rehearsal.ts), then listens on the hook socket (fd 3, the
// server's; earlier when the server says no other waiting worker listens), accepts one connection,
// stops listening, runs that event exactly as the per-event process would (runHookFromCli, its own
// deadline and exit) with its output sent to the front as frames, and exits.
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { parseConfigAhead } from '../../config/load.js';
import type { Config } from '../../config/model.js';
import { hostName } from '../../host/hostname.js';
import { LibvirtConnection } from '../../host/libvirt/connection.js';
import { loadLibvirtBinding } from '../../host/libvirt/loader.js';
import { PciIds } from '../../host/pci-ids.js';
import { UsageError } from '../../model/errors.js';
import { net } from '../../model/lazy-builtins.js';
import { type HostPaths, hostPaths } from '../../model/paths.js';
import type { EarlyConnection } from '../commands/hook.js';
import { trustProblem } from '../commands/hook.js';
import { reportError } from '../exit.js';
import { redirectOutput, STDOUT, writeErr, writeFully } from '../output.js';
import { withPrivateFolder } from './private-folder.js';
import { answerFrame, type EventRequest, LISTEN_FD, readRequest, requestBytes } from './protocol.js';
import { Rehearsal } from './rehearsal.js';

/** Waits for one event on the hook socket, runs it, exits (through runProgram, with its status). */
export function runWorker(): Promise<number> {
  if (!process.send) throw new UsageError('serve --worker is started by qemu-hook serve, not by hand');
  return new Promise((resolve) => {
    let taken = false;
    let rehearsal: Rehearsal | undefined;
    let listener: Server | undefined;
    const leave = (): void => {
      if (taken) return; // from its event on, this process is the event's, whatever becomes of the server
      listener?.close();
      resolve(0);
    };
    // The server gone, or stopping its idle workers.
    process.on('disconnect', leave);
    process.on('SIGTERM', leave);
    // While waiting: the config parsed and pci.ids indexed, for the event to use if the files
    // still read the same (both are functions of the text alone).
    const paths = hostPaths(process.env['QEMU_HOOK_ROOT'] || '/');
    const ahead = parseConfigAhead(paths.configFile, { host: hostName(paths) });
    PciIds.indexAhead(paths.pciIdsCandidates);
    // On the host itself, the libvirt binding and libvirt's libraries loaded (not connected: a
    // connection kept idle could be dead by the event): a start or a stop with devices loads them
    // first thing (in the lab's guest, 0.12–0.15 s of each).
    if (paths.root === '/') {
      try {
        loadLibvirtBinding();
        bindingLoaded = true;
      } catch {
        // not built: an event that needs it says so
      }
    }
    // The hook's module initialised (from the code cache, a worker not started from the snapshot
    // would do it in the event), then the socket.
    void import('../commands/hook.js').then(() => {
      // The worker listens once it has rehearsed, or at once when the server says no other
      // waiting worker listens: a worker still cold does not win an event from a rehearsed one
      // (every listening worker is woken for a connection; the first to accept takes it).
      let listening = false;
      const listen = (): void => {
        if (listening || taken) return;
        listening = true;
        const server = net().createServer({ pauseOnConnect: true });
        listener = server;
        server.on('connection', (socket: Socket) => {
          if (taken) {
            // libuv stops accepting once the listener is closed below; should it ever hand over a
            // second connection, its front hears no 'a' and runs the hook itself.
            socket.destroy();
            return;
          }
          taken = true;
          clearTimeout(backstop);
          // The front hears 'a' first (runEvent's first, synchronous, step), and sends its request
          // while this worker closes its listener, stops rehearsing and tells the server.
          const handle = (socket as unknown as { _handle?: object })._handle;
          const ran = runEvent(
            socket,
            () => openEarly(paths, ahead?.config ?? null),
            () => rehearsal?.idle(),
          );
          // One event per worker: closed in this same turn, before libuv accepts another (the next
          // connection waits in the socket's queue for the next worker).
          server.close();
          rehearsal?.stop();
          // The server keeps a copy of the connection to answer for this worker should it die, and
          // starts the next worker. The raw handle: a socket object there would read the request.
          try {
            process.send?.('took', handle as never);
            process.disconnect?.();
          } catch {
            // the server is gone
          }
          void ran.then(resolve);
        });
        server.once('error', (err) => {
          writeErr(`qemu-hook serve --worker: cannot listen on fd ${LISTEN_FD}: ${err.message}`);
          resolve(1);
        });
        server.listen({ fd: LISTEN_FD });
      };
      process.on('message', (m) => {
        if (m === 'listen') listen();
      });
      // Should the server not say so (stopped, or gone), the worker listens all the same.
      const backstop = setTimeout(listen, LISTEN_ANYWAY_MS).unref();
      process.send?.('ready');
      // While it waits for its event, the worker rehearses it (see rehearsal.ts), when the
      // server says it is its turn; then it tells the server it is done, and listens.
      // The server keeps the quiet second before it gives a listening worker its turn (server.ts).
      rehearsal = new Rehearsal(paths, ahead?.config ?? null, 0, turnToRehearse, rehearseHandOver);
      void rehearsal.start().then(() => {
        if (taken) return;
        listen();
        try {
          process.send?.('rehearsed');
        } catch {
          // the server is gone
        }
      });
    });
  });
}

/** A waiting worker not yet told to listen listens on its own after this long (the server stopped). */
const LISTEN_ANYWAY_MS = 5_000;

/** Asks the server whether this worker may rehearse now; resolves when it says so (true) or is gone (false). */
function turnToRehearse(): Promise<boolean> {
  return new Promise((resolve) => {
    const answer = (ok: boolean): void => {
      process.off('message', onMessage);
      process.off('disconnect', onGone);
      resolve(ok);
    };
    const onMessage = (m: unknown): void => {
      if (m === 'rehearse') answer(true);
    };
    // The server gone, or this worker's event taken (it then leaves the server).
    const onGone = (): void => answer(false);
    process.on('message', onMessage);
    process.on('disconnect', onGone);
    try {
      process.send?.('rehearse?');
    } catch {
      answer(false);
    }
  });
}

/** The libvirt binding loaded while waiting (on the host itself only). */
let bindingLoaded = false;

/**
 * libvirt's connection, opening from the moment an event arrives, for the URI of the config the
 * worker parsed ahead (the run uses it only if its own config names the same URI). Only on the host
 * itself, with the binding loaded, and a config root may trust; never while waiting (a connection
 * kept open would keep libvirtd from ever leaving when idle, and could be dead by the event).
 */
function openEarly(paths: HostPaths, config: Config | null): EarlyConnection | undefined {
  if (paths.root !== '/' || !config || !bindingLoaded || trustProblem(paths, config)) return undefined;
  const uri = config.libvirtUri;
  const pending = LibvirtConnection.open(uri);
  pending.catch(() => {}); // a failed open is the run's to report, when it uses it
  return { uri, pending };
}

type Frame = (type: 'a' | 'o' | 'e' | 'x', data?: Buffer) => void;

/**
 * What an accepted connection gets first, the event's and the rehearsal's alike: 'a', then its
 * request read. Null when the connection has no descriptor (then it is closed).
 */
function takeOver(socket: Socket): { frame: Frame; request: Promise<EventRequest | null> } | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    socket.destroy();
    return null;
  }
  let connected = true;
  const frame: Frame = (type, data = Buffer.alloc(0)) => {
    if (!connected) return;
    try {
      writeFully(fd, type === 'a' ? Buffer.from('a') : answerFrame(type, data));
    } catch {
      // The front is gone (libvirt killed it?): the event still runs to its end, unheard.
      connected = false;
    }
  };
  frame('a');
  return { frame, request: readRequest(socket) };
}

/** Longer than a rehearsed hand-over takes anywhere; past it the step gives up (the event is unaffected). */
const HAND_OVER_REHEARSAL_MS = 5_000;

/**
 * The event's hand-over, rehearsed: a connection from this process accepted on a socket of its own,
 * in a folder only this user can enter, taken over as an event's is, its request read, an answer
 * framed; true when the request came through whole. A fresh Node runs all of that cold on its
 * first connection: natively ~2 ms, in the lab's guest 40-50 ms of each event (between libvirt
 * calling the hook and the run's start: 70-90 ms without this step, 25-45 ms with it).
 */
export function rehearseHandOver(): Promise<boolean> {
  return withPrivateFolder((dir) => handOverIn(dir));
}

async function handOverIn(dir: string): Promise<boolean> {
  const server = net().createServer({ pauseOnConnect: true });
  let client: Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const path = join(dir, 'hook.sock');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    const served = new Promise<boolean>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('hand-over rehearsal timed out')), HAND_OVER_REHEARSAL_MS);
      server.once('connection', (socket: Socket) => {
        const taken = takeOver(socket);
        if (!taken) return resolve(false);
        void taken.request.then((request) => {
          taken.frame('x', Buffer.from([request ? 0 : 1]));
          socket.destroy();
          resolve(request !== null);
        });
      });
    });
    const front = net().connect(path);
    client = front;
    front.on('error', () => {}); // the step's outcome is the server side's
    front.once('data', () =>
      front.write(requestBytes(['rehearsal', 'release', 'end', '-'], [], '<domain/>')),
    );
    return await served;
  } finally {
    clearTimeout(timer);
    client?.destroy();
    server.close();
  }
}

async function runEvent(
  socket: Socket,
  early: () => EarlyConnection | undefined,
  /** Resolves once the rehearsal's step under way (stopped with this event) has ended. */
  rehearsalOver: () => Promise<void> | undefined,
): Promise<number> {
  const arrived = { ms: performance.now(), cpu: process.cpuUsage() };
  const taken = takeOver(socket);
  if (!taken) return 1;
  const { frame } = taken;
  // While the front sends its request and the run reads the config: most events a front hands
  // over are a start's or a stop's, and those call libvirt.
  const connection = early();
  const request = await taken.request;
  if (!request) return 0; // the front left before handing the event over: nothing ran
  // A step of the rehearsal may still be under way (its sandbox's run ends at its next step): the
  // event never runs beside it.
  await rehearsalOver();
  takeEnvironment(request.env);
  redirectOutput((which, data) => frame(which === STDOUT ? 'o' : 'e', data));
  // The answer goes out as soon as the run has it (runHookFromCli then closes libvirt's connection),
  // or at the exit, whatever ends the run.
  let answered = false;
  const answer = (code: number): void => {
    if (answered) return;
    answered = true;
    frame('x', Buffer.from([code & 0xff]));
  };
  process.once('exit', answer);
  try {
    const { runHookFromCli } = await import('../commands/hook.js');
    return await runHookFromCli(request.args, {
      xml: request.stdin,
      resident: true,
      arrived,
      answered: answer,
      ...(connection ? { connection } : {}),
    });
  } catch (err) {
    return reportError(err, false, writeErr);
  }
}

/**
 * The front's environment instead of the server's (systemd's): a per-event hook process and the
 * scripts it runs have libvirt's (LC_ALL, PATH, HOME, …). Only the root stays the server's: the
 * socket the front reached is that root's.
 */
function takeEnvironment(env: readonly string[]): void {
  const root = process.env['QEMU_HOOK_ROOT'];
  for (const name of Object.keys(process.env)) delete process.env[name];
  for (const entry of env) {
    const eq = entry.indexOf('=');
    if (eq > 0) process.env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  if (root) process.env['QEMU_HOOK_ROOT'] = root;
  else delete process.env['QEMU_HOOK_ROOT'];
}
