// A worker of the resident hook: started by the server before any event, it parses the config and
// indexes pci.ids while it waits, then listens on the hook socket (fd 3, the server's), accepts
// one connection, stops listening, runs that event exactly as the per-event process would
// (runHookFromCli, its own deadline and exit) with its output sent to the front as frames, and
// exits.
import type { Server, Socket } from 'node:net';
import { parseConfigAhead } from '../../config/load.js';
import { hostName } from '../../host/hostname.js';
import { loadLibvirtBinding } from '../../host/libvirt/loader.js';
import { PciIds } from '../../host/pci-ids.js';
import { UsageError } from '../../model/errors.js';
import { net } from '../../model/lazy-builtins.js';
import { hostPaths } from '../../model/paths.js';
import { reportError } from '../exit.js';
import { redirectOutput, STDOUT, writeErr, writeFully } from '../output.js';
import { answerFrame, LISTEN_FD, readRequest } from './protocol.js';
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
      } catch {
        // not built: an event that needs it says so
      }
    }
    // The hook's module initialised (from the code cache, a worker not started from the snapshot
    // would do it in the event), then the socket.
    void import('../commands/hook.js').then(() => {
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
        // One event per worker: closed here, before libuv accepts another (the next connection
        // waits in the socket's queue for the next worker).
        server.close();
        rehearsal?.stop();
        // The front hears 'a' first (runEvent's first, synchronous, step).
        const handle = (socket as unknown as { _handle?: object })._handle;
        const ran = runEvent(socket);
        // The server keeps a copy of the connection to answer for this worker should it die, and
        // starts the next worker. The raw handle: a socket object there would read the request.
        try {
          process.send?.('took', handle as never);
          process.disconnect?.();
        } catch {
          // the server is gone: the event runs all the same
        }
        void ran.then(resolve);
      });
      server.once('error', (err) => {
        writeErr(`qemu-hook serve --worker: cannot listen on fd ${LISTEN_FD}: ${err.message}`);
        resolve(1);
      });
      server.listen({ fd: LISTEN_FD }, () => {
        process.send?.('ready');
        if (taken) return;
        // While it waits for its event, the worker rehearses it (see rehearsal.ts), when the
        // server says it is its turn; then it tells the server it is done.
        rehearsal = new Rehearsal(paths, ahead?.config ?? null, undefined, turnToRehearse);
        void rehearsal.start().then(() => {
          if (taken) return;
          try {
            process.send?.('rehearsed');
          } catch {
            // the server is gone
          }
        });
      });
    });
  });
}

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
  takeEnvironment(request.env);
  redirectOutput((which, data) => frame(which === STDOUT ? 'o' : 'e', data));
  process.once('exit', (code) => frame('x', Buffer.from([code & 0xff])));
  try {
    const { runHookFromCli } = await import('../commands/hook.js');
    return await runHookFromCli(request.args, { xml: request.stdin, resident: true });
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
