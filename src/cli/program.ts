// The program, whichever way Node starts it (main.ts from the code cache, snapshot.ts from a V8
// startup snapshot), and its one exit point. Commands are loaded on demand: each start of a VM runs
// this program several times, so it loads only what the command at hand needs.

import { closeOpenConnections } from '../host/libvirt/connection.js';
import { exitProcess } from '../host/libvirt/loader.js';
import { type Args, parseCliArgs } from './args.js';
import type { CliContext } from './context.js';
import { EXIT, reportError } from './exit.js';
import { STDOUT, writeAll, writeErr, writeOut } from './output.js';
import { VERSION } from './version.js';

async function run(argv: readonly string[]): Promise<number> {
  let args: Args | null = null;
  try {
    args = parseCliArgs(argv);
    if (args.command === 'help') {
      const { commandHelp, overview } = await import('./help.js');
      writeOut(args.helpFor ? commandHelp(args.helpFor) : overview());
      return EXIT.ok;
    }
    if (args.command === 'completion') {
      const { bashCompletion, zshCompletion } = await import('./completion.js');
      writeAll(STDOUT, args.shell === 'zsh' ? zshCompletion() : bashCompletion());
      return EXIT.ok;
    }
    if (args.command === 'man') {
      writeAll(STDOUT, (await import('./man.js')).manPage(VERSION));
      return EXIT.ok;
    }
    if (args.command === 'version') {
      writeOut(`qemu-hook ${VERSION}`);
      return EXIT.ok;
    }
    if (args.command === 'hook') {
      const { runHookFromCli } = await import('./commands/hook.js');
      return await runHookFromCli(args.positionals);
    }
    if (args.command === 'serve') {
      const { runServe } = await import('./commands/serve.js');
      return await runServe(args.positionals);
    }
    if (args.command === 'redefine') {
      const { runRedefineFromCli } = await import('./commands/redefine.js');
      return await runRedefineFromCli(args.positionals);
    }
    const { makeContext } = await import('./context.js');
    // --root FILE.tar.gz: a snapshot, unpacked for this run only.
    const opened = args.root ? await (await import('./root-archive.js')).openRoot(args.root) : null;
    const ctx = shownAs(makeContext(opened ? { ...args, root: opened.dir } : args), opened?.dir, args.root);
    try {
      return await dispatch(ctx);
    } finally {
      opened?.cleanup();
    }
  } catch (error) {
    return reportError(error, args?.verbose ?? argv.includes('--verbose'), writeErr);
  }
}

/** Output names files of an unpacked snapshot as `<snapshot>/etc/…`: the temp folder is gone after the run. */
function shownAs(ctx: CliContext, dir: string | undefined, root: string | null): CliContext {
  if (!dir || !root || dir === root) return ctx;
  const show = (line: string) => line.replaceAll(dir, root);
  return { ...ctx, out: (l) => ctx.out(show(l)), err: (l) => ctx.err(show(l)) };
}

async function dispatch(ctx: CliContext): Promise<number> {
  switch (ctx.args.command) {
    case 'simulate':
      return await (await import('./commands/simulate.js')).simulate(ctx);
    case 'devices':
      return await (await import('./commands/devices.js')).devices(ctx);
    case 'check':
      return await (await import('./commands/check.js')).check(ctx);
    case 'status':
      return await (await import('./commands/status.js')).status(ctx);
    case 'recover':
      return await (await import('./commands/recover.js')).recover(ctx);
    case 'apply':
      return await (await import('./commands/apply.js')).apply(ctx);
    case 'snapshot':
      return await (await import('./commands/snapshot.js')).snapshot(ctx);
    case 'log':
      return await (await import('./commands/log.js')).log(ctx);
  }
  return EXIT.usage;
}

/** Runs the command `argv` (the arguments after the program) and ends the process with its status. */
export function runProgram(argv: readonly string[]): void {
  // Should the event loop ever run dry with `run` unsettled, Node would exit 0: a start would
  // pass that was never checked. Fail instead until `run` says otherwise.
  process.exitCode = EXIT.refused;
  void run(argv).then(async (code) => {
    // Every command's libvirt connections, closed on the way out (bounded): libvirtd logs an error
    // for each one a process leaves open.
    await closeOpenConnections();
    // Leave as soon as the answer is out. A libvirt call that timed out still holds a worker thread,
    // which would keep the process (and libvirt, which waits for the hook) alive forever; and Node's
    // own wind-down costs every command a few milliseconds. Output went to the descriptors
    // synchronously (cli/output.ts) and the log is synchronous: nothing written is lost.
    exitProcess(code);
  });
}
