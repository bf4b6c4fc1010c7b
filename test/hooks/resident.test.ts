import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROTOCOL, parseRequest } from '../../src/cli/resident/protocol.js';
import { fixtureDriver } from '../e2e/support/installed-host.js';
import { hookFront, treeHash } from '../reliability/support/host.js';
import { hostCopies, MAIN } from '../support/cli.js';
import { hookRunsDone, installFront, residentBuilt, residentServers } from '../support/resident.js';

// The resident hook: `qemu-hook serve` on a copy of a fixture host, and the real hooks/qemu front
// with the real client (native/build/Release/qemu-hook-client, built with the libvirt binding)
// handing events to it. What libvirt sees (exit status, stderr) and what the host ends up with must
// be what the per-event process gives; when no worker takes an event, the front runs Node itself.

const copy = hostCopies();
const serve = residentServers();

function setUp(name = 'workstation') {
  const root = copy(name);
  // Every run, resident or not, logs its "hook run done" line (debug).
  const config = join(root, 'etc/qemu-hook/config.yaml');
  writeFileSync(config, readFileSync(config, 'utf8').replace('level: info', 'level: debug'));
  spawnSync('chmod', ['-R', 'go-w', root]);
  const hook = installFront(root);
  const xml = (domain: string) => readFileSync(join(root, 'etc/libvirt/qemu', `${domain}.xml`), 'utf8');
  const event = (domain: string, op: string, sub: string, env?: NodeJS.ProcessEnv) => {
    const r = spawnSync(hook, [domain, op, sub, '-'], {
      input: xml(domain),
      encoding: 'utf8',
      env: env ?? { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C' },
      timeout: 60_000,
    });
    return { code: r.status, stderr: r.stderr, stdout: r.stdout };
  };
  // Several at once, through the same front: what libvirt does when VMs start together.
  const eventAsync = (domain: string, op: string, sub: string) =>
    hookFront(hook, domain, op, sub, xml(domain));
  const driver = (address: string) => fixtureDriver(root, address);
  const runs = () => hookRunsDone(root);
  const state = () => readFileSync(join(root, 'var/lib/qemu-hook/state.json'), 'utf8');
  return { root, hook, xml, event, eventAsync, driver, runs, state };
}

/**
 * The fields of /proc/<pid>/stat after the command name (the first is field 3, the state); null
 * once the process is gone. The name, in parentheses, may hold spaces and ')': split after the last.
 */
function statFields(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The children of `pid`. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(statFields(d)?.[1]) === pid) // field 4: ppid
    .map(Number);
}

/** The nice value of `pid`; null once it is gone. */
function niceOf(pid: number): number | null {
  const fields = statFields(pid);
  return fields ? Number(fields[16]) : null; // field 19
}

/**
 * Whether `pid` polls its fd 3 (the hook socket a worker inherits): Node's event loop registers a
 * socket it listens on with its epoll descriptor, whose fdinfo lists it ("tfd: 3"). Null once gone.
 */
function pollsHookSocket(pid: number): boolean | null {
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target !== 'anon_inode:[eventpoll]') continue;
      if (/^tfd:\s+3\s/m.test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))) return true;
    }
    return false;
  } catch {
    return null;
  }
}

/** The workers of `qemu-hook serve` started by hand: it starts the server, whose children they are. */
function workersOf(serve: number): number[] {
  const workers = childrenOf(serve).flatMap(childrenOf);
  if (workers.length === 0) throw new Error(`no worker under ${serve}`);
  return workers;
}

/** Root lowers a rehearsing worker by 10 (rehearsal.ts); from nice 10 up that is not told apart. */
const rehearsalSeen = process.getuid?.() === 0 && getPriority() < 10;

/** `qemu-hook serve` for `root`: the server's pid, and the nice value of its workers while they rehearse. */
async function serveWatched(root: string): Promise<{ server: number; lowered: number }> {
  const launcher = await serve(root);
  const [server] = childrenOf(launcher.pid!);
  return { server: server!, lowered: Math.min((niceOf(server!) ?? 0) + 10, 19) };
}

describe.skipIf(!residentBuilt)('resident hook (qemu-hook serve + hooks/qemu + the client)', () => {
  it('runs a start and a stop in its workers: devices detached and given back, as the per-event hook does', async () => {
    const h = setUp();
    await serve(h.root);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');

    const start = h.event('win11', 'prepare', 'begin');
    expect(start.stderr).toBe('');
    expect(start.code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('vfio-pci');
    expect(h.state()).toContain('"win11"');

    const stop = h.event('win11', 'release', 'end');
    expect(stop.code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
    expect(h.state()).not.toContain('"win11"');
    expect(h.runs().map((r) => [r.op, r.resident])).toEqual([
      ['prepare', true],
      ['release', true],
    ]);
  });

  it('runs a start and a stop in workers that rehearsed them while idle, and the rehearsals wrote nothing', async () => {
    const h = setUp();
    await serve(h.root);
    const host = () => ['etc', 'var', 'sys', 'proc'].map((d) => treeHash(join(h.root, d))).join();
    const before = host();
    // Past the worker's quiet second: it rehearses (src/cli/resident/rehearsal.ts), then waits.
    await new Promise((r) => setTimeout(r, 2500));
    expect(host()).toBe(before);

    expect(h.event('win11', 'prepare', 'begin')).toMatchObject({ code: 0, stderr: '' });
    expect(h.driver('0000:01:00.0')).toBe('vfio-pci');
    await new Promise((r) => setTimeout(r, 2500)); // the next worker rehearses with the device on record
    expect(h.event('win11', 'release', 'end')).toMatchObject({ code: 0, stderr: '' });
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
    expect(h.state()).not.toContain('"win11"');
    expect(h.runs().map((r) => [r.op, r.resident])).toEqual([
      ['prepare', true],
      ['release', true],
    ]);
  });

  it('gives libvirt the same refusal (stderr line, exit status) as the per-event hook', async () => {
    const h = setUp();
    // Someone else may write the config: every start is refused, with the fix.
    chmodSync(join(h.root, 'etc/qemu-hook/config.yaml'), 0o666);
    const direct = h.event('win11', 'prepare', 'begin');
    await serve(h.root);
    const resident = h.event('win11', 'prepare', 'begin');
    expect(direct.code).toBe(1);
    expect(direct.stderr).toMatch(/refused: .*config\.yaml/);
    expect(resident).toEqual(direct);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
  });

  it("runs the event, and the VM's scripts, in the environment libvirt gave the front, not the server's", async () => {
    const h = setUp();
    const scripts = join(h.root, 'etc/libvirt/hooks/qemu.d/win11/prepare/begin');
    mkdirSync(scripts, { recursive: true });
    writeFileSync(
      join(scripts, 'env.sh'),
      `#!/bin/sh\nenv | grep -v '^QEMU_HOOK_SCRIPT=' | sort >> ${h.root}/env.out\necho ---- >> ${h.root}/env.out\n`,
      {
        mode: 0o755,
      },
    );
    spawnSync('chmod', ['-R', 'go-w', join(h.root, 'etc/libvirt/hooks')]);
    const libvirts = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      LC_ALL: 'C',
      HOME: '/root',
      USER: 'root',
    };
    const direct = h.event('win11', 'prepare', 'begin', libvirts);
    expect(direct.code).toBe(0);
    expect(h.event('win11', 'release', 'end', libvirts).code).toBe(0);
    await serve(h.root, { SERVERS_OWN: 'not for the event', HOME: '/nowhere' });
    expect(h.event('win11', 'prepare', 'begin', libvirts).code).toBe(0);
    const [perEvent, resident] = readFileSync(join(h.root, 'env.out'), 'utf8').split('----\n');
    expect(resident).toBe(perEvent);
    expect(perEvent).toContain('HOME=/root\n');
    expect(resident).not.toContain('SERVERS_OWN');
    expect(h.runs().map((r) => r.resident ?? false)).toEqual([false, false, true]);
  });

  it('answers events that arrive together, each in its own worker', async () => {
    const h = setUp();
    await serve(h.root);
    const [a, b, c] = await Promise.all([
      h.eventAsync('win11', 'prepare', 'begin'),
      h.eventAsync('backup', 'prepare', 'begin'),
      h.eventAsync('router', 'reconnect', 'begin'),
    ]);
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    const pids = new Set(h.runs().map((r) => (r as unknown as { pid: number }).pid));
    expect(pids.size).toBe(h.runs().length);
    expect(h.runs().every((r) => r.resident)).toBe(true);
    expect(h.event('win11', 'release', 'end').code).toBe(0);
    expect(h.event('backup', 'release', 'end').code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
  });

  it('the waiting worker takes the event itself: a server that is stopped does not hold it up', async () => {
    const h = setUp();
    const launcher = await serve(h.root);
    const [server] = childrenOf(launcher.pid!);
    // Once a worker listens (the server says nothing of it outside): the first event.
    expect(h.event('router', 'release', 'end').code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500)); // the next worker up and listening
    process.kill(server!, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const start = h.event('win11', 'prepare', 'begin');
      expect(start.code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(4000); // not the client's 5 s wait for a worker
      expect(h.driver('0000:01:00.0')).toBe('vfio-pci');
    } finally {
      process.kill(server!, 'SIGCONT');
    }
    expect(h.runs().map((r) => [r.op, r.resident])).toEqual([
      ['release', true],
      ['prepare', true],
    ]);
    expect(h.event('win11', 'release', 'end').code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
  });

  it.skipIf(!rehearsalSeen)(
    'lets one waiting worker rehearse at a time, so that the other can take an event at once',
    async () => {
      const h = setUp();
      // A rehearsing worker runs at nice 10 (root only): sample both until each has rehearsed.
      const { server, lowered } = await serveWatched(h.root);
      const seen = new Set<number>();
      let together = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 8000 && seen.size < 2) {
        // Read twice: a worker counts when both reads say so, so that one that ends its rehearsal
        // between two reads is not counted beside the next (each reads between the other's two).
        const workers = childrenOf(server);
        const first = workers.map((w) => niceOf(w));
        const rehearsing = workers.filter((w, i) => first[i] === lowered && niceOf(w) === lowered);
        for (const w of rehearsing) seen.add(w);
        if (rehearsing.length > 1) together++;
        await new Promise((r) => setTimeout(r, 2));
      }
      expect(seen.size, 'both workers rehearsed').toBe(2);
      expect(together, 'samples with both rehearsing').toBe(0);
    },
  );

  it.skipIf(!rehearsalSeen)(
    'a worker listens for events only once it has rehearsed, while a rehearsed one waits',
    async () => {
      const h = setUp();
      const { server, lowered } = await serveWatched(h.root);
      await new Promise((r) => setTimeout(r, 3000)); // both workers ready, rehearsed and listening
      const waiting = childrenOf(server);
      expect(waiting.map((w) => pollsHookSocket(w))).toEqual([true, true]);

      // An event takes one; its replacement starts when it is over: follow that one from its start.
      // It rehearses before it listens, at once (no quiet second for a worker held back), while
      // the rehearsed one listens.
      expect(h.event('router', 'release', 'end').code).toBe(0);
      const taken = h.runs().map((r) => r.pid);
      const survivor = waiting.filter((p) => !taken.includes(p));
      expect(survivor.map((w) => pollsHookSocket(w))).toEqual([true]);
      let first: 'rehearsing' | 'listening' | undefined;
      let replacement: number | undefined;
      const t0 = Date.now();
      while (Date.now() - t0 < 5000 && !first) {
        replacement ??= childrenOf(server).find((p) => !waiting.includes(p));
        if (replacement !== undefined) {
          if (pollsHookSocket(replacement)) first = 'listening';
          else if (niceOf(replacement) === lowered) first = 'rehearsing';
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      expect(replacement, 'a replacement started').toBeDefined();
      expect(first).toBe('rehearsing');
      expect(Date.now() - t0, 'rehearsing within a second of its start').toBeLessThan(1000);
      // Then it listens, on its own (the server tells none: one listens already).
      await new Promise((r) => setTimeout(r, 2000));
      expect(pollsHookSocket(replacement!)).toBe(true);
    },
  );

  it.skipIf(!rehearsalSeen)(
    'a worker that listens rehearses only after a quiet second; one held back, at once',
    async () => {
      const h = setUp();
      const { server, lowered } = await serveWatched(h.root);
      // For each worker: when it was first seen polling the hook socket, and first seen rehearsing.
      const polling = new Map<number, number>();
      const rehearsing = new Map<number, number>();
      const t0 = Date.now();
      while (Date.now() - t0 < 3000) {
        const now = Date.now() - t0;
        for (const w of childrenOf(server)) {
          if (!polling.has(w) && pollsHookSocket(w)) polling.set(w, now);
          if (!rehearsing.has(w) && niceOf(w) === lowered) rehearsing.set(w, now);
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      expect(rehearsing.size, 'both workers rehearsed').toBe(2);
      // The first to listen was told to (no other listened): it waited its quiet second, while the
      // other, held back, rehearsed first, and listened only once it had.
      const [listener, listenedAt] = [...polling].sort((a, b) => a[1] - b[1])[0]!;
      const [held] = [...rehearsing.keys()].filter((w) => w !== listener);
      expect(rehearsing.get(listener)! - listenedAt).toBeGreaterThanOrEqual(800);
      expect(rehearsing.get(held!)!).toBeLessThan(rehearsing.get(listener)!);
      expect(polling.get(held!)!).toBeGreaterThan(rehearsing.get(held!)!);
    },
  );

  it('starts no worker beside an event while another waits: the replacement comes after the event', async () => {
    const h = setUp();
    // A start that lasts: its per-VM script sleeps (the event's worker waits for it).
    const dir = join(h.root, 'etc/libvirt/hooks/qemu.d/win11/prepare/begin');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'slow'), '#!/bin/sh\nsleep 1.5\n', { mode: 0o755 });
    spawnSync('chmod', ['-R', 'go-w', join(h.root, 'etc/libvirt/hooks')]);
    const launcher = await serve(h.root);
    const [server] = childrenOf(launcher.pid!);
    await new Promise((r) => setTimeout(r, 3000)); // both workers ready and rehearsed
    const waiting = childrenOf(server!).sort();
    expect(waiting.length).toBe(2);

    const start = h.eventAsync('win11', 'prepare', 'begin');
    // During the script (0.3-1.3 s in): the same two workers, one busy and one waiting.
    const during = new Set<string>();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    while (Date.now() - t0 < 1300) {
      const now = childrenOf(server!);
      during.add(now.sort().join());
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([...during]).toEqual([waiting.join()]);
    expect((await start).code).toBe(0);
    // The event's worker gone, its replacement started.
    await new Promise((r) => setTimeout(r, 500));
    const after = childrenOf(server!);
    expect(after.length).toBe(2);
    expect(after.filter((p) => !waiting.includes(p)).length).toBe(1);
    expect(h.event('win11', 'release', 'end').code).toBe(0);
  });

  it("removes a killed worker's rehearsal folders (a SIGKILL runs none of its own exit handlers)", async () => {
    const h = setUp();
    const tmp = join(h.root, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const launcher = await serve(h.root, { TMPDIR: tmp });
    const [server] = childrenOf(launcher.pid!);
    await new Promise((r) => setTimeout(r, 2500)); // both ready, their rehearsals over
    const [victim, other] = childrenOf(server!);
    // What a worker killed in the middle of a step leaves: its private folder, named with its pid.
    const left = join(tmp, `qemu-hook-rehearsal-${victim}-x1y2z3`);
    const others = join(tmp, `qemu-hook-rehearsal-${other}-x1y2z3`);
    for (const dir of [left, others]) mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(left, 'state.json'), '{}');
    process.kill(victim!, 'SIGKILL');
    const t0 = Date.now();
    while (existsSync(left) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(left)).toBe(false);
    expect(existsSync(others)).toBe(true); // a worker still there keeps its own
    expect(h.event('win11', 'prepare', 'begin').code).toBe(0);
    expect(h.event('win11', 'release', 'end').code).toBe(0);
  });

  it('falls back to starting Node when the server is gone (its socket left behind)', async () => {
    const h = setUp();
    const server = await serve(h.root);
    // All of it, as a crash of the service leaves it: `serve`, the server it started, its workers.
    const tree = [server.pid!, ...childrenOf(server.pid!), ...workersOf(server.pid!)];
    for (const pid of tree) process.kill(pid, 'SIGKILL');
    await new Promise((r) => server.once('exit', r));
    expect(existsSync(join(h.root, 'run/qemu-hook/hook.sock'))).toBe(true);

    expect(h.event('win11', 'prepare', 'begin').code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('vfio-pci');
    expect(h.event('win11', 'release', 'end').code).toBe(0);
    expect(h.driver('0000:01:00.0')).toBe('nvidia');
    expect(h.runs().map((r) => [r.op, r.resident ?? false])).toEqual([
      ['prepare', false],
      ['release', false],
    ]);
  });

  it('does not use a socket folder others may write: says so, and the event still runs', async () => {
    const h = setUp();
    await serve(h.root);
    chmodSync(join(h.root, 'run/qemu-hook'), 0o777);
    const r = h.event('win11', 'prepare', 'begin');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^qemu-hook: not using .*hook\.sock: .*chmod 700 /);
    expect(h.runs().map((x) => x.resident ?? false)).toEqual([false]);
    expect(h.event('win11', 'release', 'end').code).toBe(0);
  });

  it('a worker killed in the middle of a start: libvirt sees what a killed per-event hook gives (137), the stop gives everything back', async () => {
    const h = setUp();
    writeFileSync(join(h.root, 'etc/qemu-hook/fault-injection'), 'detach#2\n', { mode: 0o644 });
    const direct = h.event('win11', 'prepare', 'begin');
    expect(h.event('win11', 'release', 'end').code).toBe(0);
    await serve(h.root);
    const start = h.event('win11', 'prepare', 'begin');
    expect(direct.code).toBe(137);
    expect(start.code).toBe(137);
    expect(start.stderr.trim().split('\n')).toEqual([
      "qemu-hook: the hook's run ended without an answer (SIGKILL); what it took is in the state file: libvirt's release or qemu-hook recover gives it back",
    ]);
    expect(h.runs().length).toBe(1); // the per-event release; the killed runs logged no end
    // libvirt sends release after a failed prepare.
    expect(h.event('win11', 'release', 'end').code).toBe(0);
    for (const [address, original] of [
      ['0000:01:00.0', 'nvidia'],
      ['0000:01:00.1', 'snd_hda_intel'],
    ] as const)
      expect(h.driver(address)).toBe(original);
    expect(h.state()).not.toContain('"win11"');
  });

  it('a worker that dies while a large definition is still coming in: the front has the answer at once, not at its backstop', async () => {
    const h = setUp();
    const server = await serve(h.root);
    const front = spawn(h.hook, ['win11', 'prepare', 'begin', '-'], {
      env: { LC_ALL: 'C', PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    front.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const done = new Promise<number | null>((resolve) => front.on('close', (code) => resolve(code)));
    front.stdin.on('error', () => {});
    const write = (text: string) => new Promise<void>((resolve) => front.stdin.write(text, () => resolve()));
    // The first megabyte read by the client: a worker has taken the event (the client reads stdin
    // only then). It stops reading; the rest fills the socket and the client waits for room.
    // Which worker took it is not visible from here (when the event comes before the first worker
    // is ready, a second one starts and either may take it): all of them stop, then die.
    await write(`${h.xml('win11')}<!--${'x'.repeat(1 << 20)}`);
    const workers = workersOf(server.pid!);
    for (const w of workers) process.kill(w, 'SIGSTOP');
    void write(`${'x'.repeat(4 << 20)}-->`).then(() => front.stdin.end());
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    for (const w of workers) process.kill(w, 'SIGKILL');
    expect(await done).toBe(137);
    expect(Date.now() - killedAt).toBeLessThan(10_000); // not the client's 3700 s backstop
    expect(stderr).toContain("the hook's run ended without an answer (SIGKILL)");
    expect(h.driver('0000:01:00.0')).toBe('nvidia'); // it never got to the event
  });

  it('serve refuses a socket folder others can enter, with the fix', () => {
    const h = setUp();
    mkdirSync(join(h.root, 'run/qemu-hook'), { recursive: true, mode: 0o755 });
    chmodSync(join(h.root, 'run/qemu-hook'), 0o755);
    const r = spawnSync(process.execPath, [MAIN, 'serve'], {
      env: { ...process.env, QEMU_HOOK_ROOT: h.root },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/run\/qemu-hook must be a folder .*chmod 700 /);
  });
});

describe('the resident hook protocol', () => {
  const item = (s: string | Buffer) => {
    const b = Buffer.from(s);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(b.length);
    return Buffer.concat([h, b]);
  };
  const request = (args: string[], stdin: string[], env: string[] = ['PATH=/usr/bin']) =>
    Buffer.concat([
      item(PROTOCOL),
      item(String(args.length)),
      ...args.map(item),
      item(String(env.length)),
      ...env.map(item),
      ...stdin.map(item),
      item(''),
    ]);

  it('reads the arguments and the XML sent in pieces', () => {
    const r = parseRequest(request(['win11', 'prepare', 'begin', '-'], ['<domain>', '</domain>']));
    expect(r).toEqual({
      args: ['win11', 'prepare', 'begin', '-'],
      env: ['PATH=/usr/bin'],
      stdin: '<domain></domain>',
    });
  });

  it('runs nothing until the request is complete, nor for another protocol', () => {
    const full = request(['win11', 'prepare', 'begin', '-'], ['<domain/>']);
    for (let cut = 0; cut < full.length; cut++) expect(parseRequest(full.subarray(0, cut))).toBeNull();
    expect(parseRequest(Buffer.concat([item('qemu-hook/0'), full.subarray(4 + PROTOCOL.length)]))).toBeNull();
  });

  it('takes an empty argument for what it is, not for the end', () => {
    expect(parseRequest(request(['vm', 'release', '', '-'], [], ['EMPTY=']))).toEqual({
      args: ['vm', 'release', '', '-'],
      env: ['EMPTY='],
      stdin: '',
    });
  });
});
