// The entry of the V8 startup snapshot (dist/qemu-hook.blob), which hooks/qemu starts Node from:
//   node --snapshot-blob <dist>/qemu-hook.blob hook <domain> <op> <subop> <extra>
// scripts/build.mjs runs this file once with --build-snapshot: the modules a hook event uses are
// loaded and initialised then (zod's schemas, xmldom, pino, ...), and each start deserialises that
// heap instead of compiling and running them again. Only Node's built-ins may be required here, and
// nothing read at build time may stand for the host the program later runs on (see
// host/program-location.ts).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { startupSnapshot } from 'node:v8';
import '../host/libvirt/driver-control.js';
import { setProgramFile } from '../host/program-location.js';
import { runHookFromCli } from './commands/hook.js';
import { runProgram } from './program.js';

// The build (and install.sh, where the checkout has the fixture hosts) may hand us fixture hosts
// to run a prepare and a release on, QEMU_HOOK_SNAPSHOT_WARMUP=<domain>@<root>[,…]: the functions
// they run (a managed VM's devices, a single GPU's hand-over) are then compiled into the snapshot,
// as the code cache holds those of its warm-up run. Only ever fixture roots: their copies.
const warmUps = (process.env['QEMU_HOOK_SNAPSHOT_WARMUP'] ?? '')
  .split(',')
  .filter((w) => w.includes('@'))
  .map((w) => ({ domain: w.slice(0, w.indexOf('@')), root: w.slice(w.indexOf('@') + 1) }));
if (warmUps.length > 0) {
  void (async () => {
    for (const { domain, root } of warmUps) {
      if (!root.startsWith('/') || resolve(root) === '/') continue;
      process.env['QEMU_HOOK_ROOT'] = root;
      const xml = readFileSync(join(root, 'etc/libvirt/qemu', `${domain}.xml`), 'utf8');
      await runHookFromCli([domain, 'prepare', 'begin', '-'], { xml });
      await runHookFromCli([domain, 'release', 'end', '-'], { xml });
    }
    delete process.env['QEMU_HOOK_ROOT'];
  })();
}

startupSnapshot.setDeserializeMainFunction(() => {
  const dist = dirname(resolve(snapshotBlob(process.execArgv)));
  setProgramFile(join(dist, 'qemu-hook.cjs'));
  // argv as if started as dist/cli/main.cjs: a started-from-snapshot run has no script in argv[1],
  // and whatever starts the program again (the redefine helper) takes it from there.
  process.argv.splice(1, 0, join(dist, 'cli', 'main.cjs'));
  runProgram(process.argv.slice(2));
});

function snapshotBlob(execArgv: readonly string[]): string {
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (a === '--snapshot-blob') return execArgv[i + 1] ?? '';
    if (a.startsWith('--snapshot-blob=')) return a.slice('--snapshot-blob='.length);
  }
  return '';
}
