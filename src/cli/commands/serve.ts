// `qemu-hook serve`: the resident hook. Starting Node is most of what a hook event costs (the
// program's own work on a start or a stop is a few tens of milliseconds, Node's start alone as
// much again or more). This process keeps two workers started ahead of time: Node up, the program
// loaded, listening on a Unix socket. hooks/qemu hands each event to that socket
// (native/hook-client.c), where a waiting worker accepts it and runs it exactly as the per-event
// process would (the same runHookFromCli, its own process, its own deadline, its own exit) and
// then exits; the server has the next one starting already.
//
// One process per event, as before: nothing of one event (a lock, a deadline, a fault switch, a
// module's state) outlives it, and a worker killed in the middle is a hook killed in the middle,
// which the write-ahead records already make safe. Only the waiting for Node moved.
//
// The socket: systemd's (qemu-hook.socket, root's, mode 600 in a 700 folder) when socket-activated,
// else <root>/run/qemu-hook/hook.sock made here the same way (by a parent process that then starts
// the server with it, as systemd does: see ../resident/server.ts). Whoever can connect can run the hook,
// which only root (or, under a fixture root, its owner) may.
//
// The server: ../resident/server.ts; a worker: ../resident/worker.ts; their protocol with the
// front's client: ../resident/protocol.ts.
import { UsageError } from '../../model/errors.js';

export async function runServe(positionals: readonly string[]): Promise<number> {
  if (positionals[0] === '--worker') return (await import('../resident/worker.js')).runWorker();
  if (positionals.length > 1 || positionals[0]?.startsWith('-'))
    throw new UsageError('usage: qemu-hook serve [SOCKET] (systemd starts it as qemu-hook.service)');
  return (await import('../resident/server.js')).runServer(positionals[0]);
}
