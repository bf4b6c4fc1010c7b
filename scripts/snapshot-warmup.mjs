// The startup snapshot's warm-up hosts (src/cli/snapshot.ts runs a prepare and a release of one
// domain on each), for the build (scripts/build.mjs) and for install.sh, which makes the snapshot
// again where the build's does not fit the node it installs for:
//   node scripts/snapshot-warmup.mjs copy <fixtures/hosts> <dir>   copies those present into <dir>
//                                  and prints QEMU_HOOK_SNAPSHOT_WARMUP for them (empty: none)
//   node scripts/snapshot-warmup.mjs check <dir>   exit 1, with the reason, unless every copy in
//                                  <dir> saw a detach and a reattach and holds nothing any more
// Only ever copies: the warm-up's QEMU_HOOK_ROOT is a folder of this script's making.
import { chmodSync, cpSync, existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const WARM_UPS = [
  { host: 'workstation', domain: 'win11' }, // a managed VM's devices
  { host: 'single-amd', domain: 'gpu-vm' }, // a single GPU's hand-over
];

/** Copies the warm-up hosts found in `fixtures` into `dir`; the QEMU_HOOK_SNAPSHOT_WARMUP value for them. */
export function copyWarmUpHosts(fixtures, dir) {
  const copied = WARM_UPS.filter((w) => existsSync(join(fixtures, w.host)));
  for (const w of copied) {
    cpSync(join(fixtures, w.host), join(dir, w.host), { recursive: true, verbatimSymlinks: true });
    notWritableByOthers(join(dir, w.host));
  }
  return copied.map((w) => `${w.domain}@${join(dir, w.host)}`).join(',');
}

/** The copies are ours alone, whatever the checkout's umask was: the hook trusts no config others may write. */
function notWritableByOthers(path) {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  if (st.mode & 0o022) chmodSync(path, st.mode & 0o7755);
  if (st.isDirectory()) for (const name of readdirSync(path)) notWritableByOthers(join(path, name));
}

/** Why the warm-up on the copies in `dir` did not do its work, or null when it did. */
export function warmUpProblem(dir) {
  for (const w of WARM_UPS) {
    const root = join(dir, w.host);
    if (!existsSync(root)) continue;
    let calls = '';
    try {
      calls = readFileSync(join(root, 'var/lib/qemu-hook-fixture/driver-calls.jsonl'), 'utf8');
    } catch {}
    let state = null;
    try {
      state = JSON.parse(readFileSync(join(root, 'var/lib/qemu-hook/state.json'), 'utf8'));
    } catch {}
    if (
      !calls.includes('"detach"') ||
      !calls.includes('"reattach"') ||
      !state ||
      state.records.length > 0 ||
      state.handovers
    )
      return `the warm-up prepare and release of ${w.domain} on fixtures/hosts/${w.host} did not detach and give back`;
  }
  return null;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [command, a, b] = process.argv.slice(2);
  if (command === 'copy' && a && b) {
    process.stdout.write(`${copyWarmUpHosts(a, b)}\n`);
  } else if (command === 'check' && a) {
    const problem = warmUpProblem(a);
    if (problem) {
      process.stderr.write(`${problem}\n`);
      process.exit(1);
    }
  } else {
    process.stderr.write('usage: snapshot-warmup.mjs copy <fixtures/hosts> <dir> | check <dir>\n');
    process.exit(2);
  }
}
