// Speed, as ratios against a baseline measured in the same run (never a pass/fail test):
//  1. `--simulate win11 prepare` on a generated 300-device host vs `node -e 0`; peak RSS. Before
//     it, the floor of every command a fresh Node runs: `qemu-hook --version` vs `node -e 0`.
//  2. the hook's fast path (a VM qemu-hook does not manage) vs a minimal bash dispatcher that
//     reads stdin and looks for qemu.d/<vm>/<op>/<subop>.
//  3. a 200-domain reconnect storm (a daemon restart) through the hook vs the same dispatcher.
//  4. a managed VM's release and prepare through the installed hook (hooks/qemu; fixture driver
//     control) vs `node -e 0`: handed to the resident hook (`qemu-hook serve`, a worker with Node
//     already started), and run by a Node the front starts, from the V8 startup snapshot (what the
//     front does when the snapshot fits its node) and from the code-cached entry (the fallback).
//  5. with --against DIR (another checkout, built): only the resident hook of this checkout and of
//     DIR, each serving its own copy of the host, their events alternating in the same rounds (a
//     prepare, its release and an event with nothing to do, back to back): what a change did,
//     whatever the machine's speed that day. The rounds are 0.4 s apart, shorter than a worker's
//     quiet second: no worker rehearses. With --spaced they are 2.5 s apart, and the workers of
//     both have rehearsed when their events come (what a change to the rehearsal did).
// usage: npm run bench [-- --runs N] [-- --against DIR [--spaced]]
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 21;
const work = mkdtempSync(join(tmpdir(), 'qh-bench-'));
// A resident worker rehearses its event after a quiet second (src/cli/resident/rehearsal.ts).
const SPACED_MS = 1500;
// Every measured process runs in the environment libvirt gives a hook: cleared but for these. The
// baseline too: a variable such as NODE_EXTRA_CA_CERTS (Node then parses a certificate bundle at
// every start) would otherwise inflate `node -e 0` and flatter every ratio against it.
const HOOK_ENV = { LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/root', USER: 'root' };
const log = (s) => process.stdout.write(`${s}\n`);
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0); // `npm run bench | head`
  throw err;
});

const againstArg = process.argv.indexOf('--against');
const against = againstArg > 0 ? resolve(process.argv[againstArg + 1] ?? '') : null;
const ROUND_PAUSE_MS = process.argv.includes('--spaced') ? 2500 : 400;

try {
  if (against) {
    await compareResident(against);
  } else {
    const host = join(work, 'host');
    run('node', [join(repo, 'scripts/make-fixtures.mjs'), '--generate-large', host, '--devices', '300']);
    const xml = readFileSync(join(host, 'etc/libvirt/qemu/win11.xml'), 'utf8');

    // 1. --simulate against node -e 0, interleaved so that load on the machine hits both alike.
    const preload = join(work, 'rss.cjs');
    writeFileSync(
      preload,
      "process.on('exit', () => require('fs').writeSync(2, 'QH_MAXRSS=' + process.resourceUsage().maxRSS + '\\n'));\n",
    );
    const main = join(repo, 'dist/cli/main.cjs');
    // The floor under every line that starts Node for this program: the program loaded (from its
    // code cache) and nothing read. --simulate cannot be cheaper than this plus reading the host.
    const floor = interleave(
      () => ['node', ['-e', '0']],
      () => ['node', [main, '--version']],
    );
    log(
      `program loaded, nothing read (qemu-hook --version): ${ms(floor.b.median)} vs node -e 0 ${ms(floor.a.median)} → ${ratio(floor.b.median, floor.a.median)}× (the floor of any command run by a fresh Node)`,
    );
    const pair = interleave(
      () => ['node', ['-e', '0']],
      () => ['node', ['--require', preload, main, '--simulate', 'win11', 'prepare', '--root', host]],
    );
    const rss = Math.max(...pair.b.outputs.map((o) => Number(/QH_MAXRSS=(\d+)/.exec(o)?.[1] ?? 0))) / 1024;
    log(
      `simulate prepare, 300-device host: ${ms(pair.b.median)} vs node -e 0 ${ms(pair.a.median)} → ${ratio(pair.b.median, pair.a.median)}× (target ≤ 1.3×); peak RSS ${rss.toFixed(0)} MB (target ≤ 80 MB)`,
    );

    // 2 and 3. The installed hook (hooks/qemu with this checkout and the generated host baked in).
    const hook = installHook(host);
    const bash = join(work, 'dispatcher');
    writeFileSync(
      bash,
      `#!/bin/bash\nxml=$(cat)\np="${host}/etc/libvirt/hooks/qemu.d/$1/$2/$3"\nif [ -d "$p" ]; then for f in "$p"/*; do [ -x "$f" ] && "$f" "$@" <<<"$xml"; done\nelif [ -x "$p" ]; then "$p" "$@" <<<"$xml"; fi\nexit 0\n`,
    );
    chmodSync(bash, 0o755);
    const fast = interleave(
      () => [bash, ['unmanaged', 'prepare', 'begin', '-'], xml],
      () => [hook, ['unmanaged', 'prepare', 'begin', '-'], xml],
      RUNS * 5,
    );
    log(
      `hook fast path (unmanaged VM, prepare): ${ms(fast.b.median)} vs bash dispatcher ${ms(fast.a.median)} → ${ratio(fast.b.median, fast.a.median)}× (target ≤ 1.0×)`,
    );

    const names = Array.from({ length: 200 }, (_, i) => `vm${String(i).padStart(3, '0')}`);
    const storm = (cmd) => {
      const t0 = process.hrtime.bigint();
      for (const n of names) spawnSync(cmd, [n, 'reconnect', 'begin', '-'], { input: xml, env: HOOK_ENV });
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const configured = readFileSync(join(host, 'etc/qemu-hook/config.yaml'), 'utf8');
    writeFileSync(
      join(host, 'etc/qemu-hook/config.yaml'),
      configured.replace(
        'domains:\n',
        `domains:\n${names.map((n) => `  ${n}:\n    devices: [ { name: gpu, match: { vendor: "10de", device: "2204" } } ]\n`).join('')}`,
      ),
    );
    const stormA = [];
    const stormB = [];
    for (let i = 0; i < 3; i++) {
      stormA.push(storm(bash));
      stormB.push(storm(hook));
    }
    log(
      `reconnect storm, 200 configured domains: ${(median(stormB) / 1000).toFixed(2)} s vs bash dispatcher ${(median(stormA) / 1000).toFixed(2)} s → ${ratio(median(stormB), median(stormA))}×`,
    );
    writeFileSync(join(host, 'etc/qemu-hook/config.yaml'), configured);

    // 4. A managed VM's release and prepare: resident vs snapshot vs code cache vs node -e 0,
    // interleaved. The per-event fronts have program folders without the client, so they start Node
    // although the resident hook listens on the host's socket.
    const resident = hook;
    const hookSnapshot = installHook(host, perEventProgram('per-event', true), 'qemu-snapshot');
    const hookCodeCache = installHook(host, perEventProgram('code-cache', false), 'qemu-code-cache');
    const server = await serve(host);
    const hookRuns = Math.max(7, Math.floor(RUNS / 2));
    const prepare = (h) =>
      spawnSync(h, ['win11', 'prepare', 'begin', '-'], { input: xml, encoding: 'utf8', env: HOOK_ENV });
    const release = (h) =>
      spawnSync(h, ['win11', 'release', 'end', '-'], { input: xml, encoding: 'utf8', env: HOOK_ENV });
    const stateFile = join(host, 'var/lib/qemu-hook/state.json');
    const timesOf = {
      node: [],
      relRes: [],
      relSpaced: [],
      relSnap: [],
      relCache: [],
      prepRes: [],
      prepSpaced: [],
      prepSnap: [],
      prepCache: [],
    };
    try {
      for (let i = 0; i < hookRuns + 1; i++) {
        const keep = i > 0; // the first round warms the page cache
        const t = (key, f, check) => {
          const t0 = process.hrtime.bigint();
          const r = f();
          const dt = Number(process.hrtime.bigint() - t0) / 1e6;
          if (r.status !== 0) throw new Error(`${key} exited ${r.status}: ${r.stderr}`);
          check?.();
          if (keep) timesOf[key].push(dt);
        };
        const held = () => {
          if (!readFileSync(stateFile, 'utf8').includes('"win11"'))
            throw new Error('prepare recorded nothing');
        };
        const free = () => {
          if (readFileSync(stateFile, 'utf8').includes('"win11"'))
            throw new Error('release gave nothing back');
        };
        t('prepRes', () => prepare(resident), held);
        t('relRes', () => release(resident), free);
        // As libvirt sends them (a VM runs between its start and its stop): each event finds a worker
        // that has been waiting, and has rehearsed the event (src/cli/resident/rehearsal.ts).
        pause(SPACED_MS);
        // The baseline where no worker is rehearsing (a rehearsal beside it made it slower).
        t('node', () => spawnSync('node', ['-e', '0'], { env: HOOK_ENV }));
        t('prepSpaced', () => prepare(resident), held);
        pause(SPACED_MS);
        t('relSpaced', () => release(resident), free);
        t('prepSnap', () => prepare(hookSnapshot), held);
        t('relSnap', () => release(hookSnapshot), free);
        t('prepCache', () => prepare(hookCodeCache), held);
        t('relCache', () => release(hookCodeCache), free);
      }
    } finally {
      server.kill('SIGTERM');
    }
    // The server counts what it handed to its workers: every resident event, none fell back.
    const handed = Number(/(\d+) events taken by workers/.exec(await server.said)?.[1] ?? -1);
    if (handed !== 4 * (hookRuns + 1))
      throw new Error(`the resident hook answered ${handed} of ${4 * (hookRuns + 1)} events`);
    const m = Object.fromEntries(Object.entries(timesOf).map(([k, v]) => [k, median(v)]));
    const fits = snapshotFits();
    const three = (res, snap, cache) =>
      `resident ${ms(m[res])}, snapshot ${ms(m[snap])}, code cache ${ms(m[cache])} vs node -e 0 ${ms(m.node)} → ${ratio(m[res], m.node)}× / ${ratio(m[snap], m.node)}× / ${ratio(m[cache], m.node)}×`;
    log(
      `hook release of a managed VM (5 devices): ${three('relRes', 'relSnap', 'relCache')} (target ≤ 1.3×)${fits ? '' : ' [no usable snapshot: the snapshot column ran from the code cache]'}`,
    );
    log(
      `hook prepare of a managed VM (5 devices): ${three('prepRes', 'prepSnap', 'prepCache')} (target ≤ 1.5×)`,
    );
    log(
      `  resident, events ${SPACED_MS / 1000} s apart (the worker waiting and rehearsed): release ${ms(m.relSpaced)} → ${ratio(m.relSpaced, m.node)}×, prepare ${ms(m.prepSpaced)} → ${ratio(m.prepSpaced, m.node)}× (the lines above: back to back, the next worker starting beside the event)`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

function installHook(root, program = repo, name = 'qemu') {
  const text = readFileSync(join(repo, 'hooks/qemu'), 'utf8')
    .replace(/^NODE=.*# qemu-hook:node$/m, `NODE='${realpathSync(process.execPath)}' # qemu-hook:node`)
    .replace(/^PROGRAM=.*# qemu-hook:program$/m, `PROGRAM='${program}' # qemu-hook:program`)
    .replace(/^ROOT=.*# qemu-hook:root$/m, `ROOT='${root}' # qemu-hook:root`);
  const path = join(root, 'etc/libvirt/hooks', name);
  mkdirSync(join(root, 'etc/libvirt/hooks'), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

/**
 * A program folder for a front that starts Node itself: this checkout's dist/ (without the startup
 * snapshot unless `snapshot`) and libvirt binding, but no resident hook client.
 */
function perEventProgram(name, snapshot) {
  const dir = join(work, name);
  mkdirSync(join(dir, 'dist'), { recursive: true });
  const files = ['cli', 'qemu-hook.cjs', 'qemu-hook.cache'];
  if (snapshot) files.push('qemu-hook.blob', 'qemu-hook.blob.node', 'qemu-hook-snapshot.cjs');
  for (const f of files)
    if (existsSync(join(repo, 'dist', f)))
      cpSync(join(repo, 'dist', f), join(dir, 'dist', f), { recursive: true });
  mkdirSync(join(dir, 'native/build/Release'), { recursive: true });
  const addon = join(repo, 'native/build/Release/qemu_hook_libvirt.node');
  if (existsSync(addon)) symlinkSync(addon, join(dir, 'native/build/Release/qemu_hook_libvirt.node'));
  symlinkSync(join(repo, 'package.json'), join(dir, 'package.json'));
  return dir;
}

/**
 * 5. This checkout's resident hook against the one of `other`, in the same rounds: each serves its
 * own copy of the host; per round, in alternating order, each gets a pause (ROUND_PAUSE_MS), then a
 * prepare, its release and an event with nothing to do (`router release`), back to back.
 */
async function compareResident(other) {
  if (!existsSync(join(other, 'dist/cli/main.cjs')))
    throw new Error(`${other} has no dist/cli/main.cjs: npm run build there first`);
  const sides = [];
  for (const [name, program] of [
    ['this', repo],
    ['other', other],
  ]) {
    const host = join(work, `host-${name}`);
    run('node', [join(repo, 'scripts/make-fixtures.mjs'), '--generate-large', host, '--devices', '300']);
    const xml = readFileSync(join(host, 'etc/libvirt/qemu/win11.xml'), 'utf8');
    sides.push({ name, program, hook: installHook(host, program), xml, server: await serve(host, program) });
  }
  const times = {};
  const rounds = Math.max(7, RUNS);
  const event = (side, domain, op, sub) => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(side.hook, [domain, op, sub, '-'], {
      input: side.xml,
      encoding: 'utf8',
      env: HOOK_ENV,
    });
    if (r.status !== 0) throw new Error(`${side.name}: ${domain} ${op} exited ${r.status}: ${r.stderr}`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  try {
    for (let i = 0; i < rounds + 1; i++) {
      for (const side of i % 2 ? sides : [...sides].reverse()) {
        pause(ROUND_PAUSE_MS);
        const got = [
          ['prepare', event(side, 'win11', 'prepare', 'begin')],
          ['release', event(side, 'win11', 'release', 'end')],
          ['nothing to do', event(side, 'router', 'release', 'end')],
        ];
        if (i === 0) continue; // the first round warms the page cache
        for (const [what, took] of got) {
          const key = `${side.name} ${what}`;
          times[key] ??= [];
          times[key].push(took);
        }
      }
    }
  } finally {
    for (const side of sides) side.server.kill('SIGTERM');
  }
  for (const side of sides) {
    const said = await side.server.said;
    const took = Number(
      /(\d+) events taken by workers/.exec(said)?.[1] ??
        /(\d+) events handed to workers/.exec(said)?.[1] ??
        -1,
    );
    if (took !== 3 * (rounds + 1))
      throw new Error(`${side.name}'s resident hook answered ${took} events: ${said}`);
  }
  log(
    `resident hook, this checkout vs ${other} (medians, back to back in each round; rounds ${ROUND_PAUSE_MS / 1000} s apart${ROUND_PAUSE_MS > 1000 ? ', the workers rehearsed' : ', no worker rehearsed'}):`,
  );
  for (const what of ['prepare', 'release', 'nothing to do']) {
    const a = median(times[`this ${what}`]);
    const b = median(times[`other ${what}`]);
    log(`  ${what}: ${ms(a)} vs ${ms(b)} → ${ratio(a, b)}×`);
  }
}

/** `qemu-hook serve` of `program` for the fixture host `root`, listening; `said`: all it wrote, once it exited. */
function serve(root, program = repo) {
  const child = spawn('node', [join(program, 'dist/cli/main.cjs'), 'serve'], {
    env: { ...HOOK_ENV, QEMU_HOOK_ROOT: root },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let said = '';
  child.said = new Promise((resolve) => child.on('exit', () => resolve(said)));
  return new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      said += d;
      if (said.includes('answering hook events')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`qemu-hook serve exited ${code}: ${said}`)));
  });
}

function snapshotFits() {
  try {
    const made = readFileSync(join(repo, 'dist/qemu-hook.blob.node'), 'utf8');
    const node = statSync(realpathSync(process.execPath));
    const cpu = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return made === `${node.size} ${Math.floor(node.mtimeMs / 1000)}\n${cpu}\n`;
  } catch {
    return false;
  }
}

/** Sleeps the bench itself (its measured children are synchronous spawns). */
function pause(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function interleave(a, b, runs = RUNS) {
  const out = { a: { times: [], outputs: [] }, b: { times: [], outputs: [] } };
  for (let i = 0; i < runs + 2; i++) {
    for (const [key, make] of [
      ['a', a],
      ['b', b],
    ]) {
      const [cmd, args, input] = make();
      const t0 = process.hrtime.bigint();
      const r = spawnSync(cmd, args, { input: input ?? '', encoding: 'utf8', env: HOOK_ENV });
      const dt = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
      if (i >= 2) {
        // the first two rounds warm the page cache
        out[key].times.push(dt);
        out[key].outputs.push(r.stderr);
      }
    }
  }
  out.a.median = median(out.a.times);
  out.b.median = median(out.b.times);
  return out;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}
function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}
function ms(x) {
  return `${x.toFixed(1)} ms`;
}
function ratio(x, y) {
  return (x / y).toFixed(2);
}
