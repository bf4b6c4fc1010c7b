// The detached `qemu-hook redefine` helper: one per domain, and never stuck forever behind a libvirt
// that does not answer. libvirt here is a socket that accepts and never replies, so every call
// the helper makes hangs, as with a daemon that is wedged.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addonBuilt } from '../host/libvirt/support.js';
import { hostCopies, MAIN, REPO } from '../support/cli.js';
import { waitFor } from '../support/wait.js';

const copy = hostCopies();
const started: ChildProcess[] = [];
const servers: Server[] = [];

afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers.splice(0)) s.close();
});

/** A fixture host whose config points libvirt at a socket that never answers. */
async function hostWithSilentLibvirt(): Promise<string> {
  const root = copy('workstation-moved');
  const socket = join(root, 'silent.sock');
  const server = createServer(() => {});
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const config = join(root, 'etc/qemu-hook/config.yaml');
  writeFileSync(
    config,
    readFileSync(config, 'utf8').replace(/uri: "[^"]*"/, `uri: "qemu+unix:///system?socket=${socket}"`),
  );
  return root;
}

function helper(root: string, limitMs: number): ChildProcess {
  const child = spawn(process.execPath, [MAIN, 'redefine', 'win11', 'redefine'], {
    env: { ...process.env, QEMU_HOOK_ROOT: root, QEMU_HOOK_REDEFINE_TIME_LIMIT_MS: String(limitMs) },
    stdio: 'ignore',
  });
  started.push(child);
  return child;
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('exit', (code) => resolve(code));
  });

/** The file's text, '' while it does not exist. */
function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
const pidFile = (root: string) => join(root, 'run/qemu-hook/redefine-win11.pid');
const log = (root: string) => readIfThere(join(root, 'var/log/libvirt/qemu-hook.log'));

describe.skipIf(!addonBuilt)('the redefine helper', () => {
  it('gives up after its time limit when libvirt never answers, and frees the domain', async () => {
    const root = await hostWithSilentLibvirt();
    const child = helper(root, 1500);
    await waitFor('the pid file', () => existsSync(pidFile(root)) || undefined, 15_000, 50);
    expect(await exited(child)).toBe(3);
    expect(log(root)).toMatch(/redefine: gave up after 1\.5 s/);
    expect(existsSync(pidFile(root))).toBe(false);
  }, 30_000);

  it('runs once per domain: a second helper leaves the work to the first', async () => {
    const root = await hostWithSilentLibvirt();
    const first = helper(root, 60_000);
    await waitFor('the pid file', () => existsSync(pidFile(root)) || undefined, 15_000, 50);
    const second = helper(root, 60_000);
    expect(await exited(second)).toBe(0);
    expect(log(root)).toMatch(/another helper is already at work/);
    expect(readFileSync(pidFile(root), 'utf8').trim()).toBe(String(first.pid));
    expect(first.exitCode).toBeNull(); // still waiting on libvirt
  }, 30_000);

  it('of five started at once, one works and four leave', async () => {
    const root = await hostWithSilentLibvirt();
    const helpers = Array.from({ length: 5 }, () => helper(root, 60_000));
    await waitFor(
      'four to leave',
      () => helpers.filter((h) => h.exitCode !== null).length === 4 || undefined,
      15_000,
      50,
    );
    const working = helpers.filter((h) => h.exitCode === null);
    expect(helpers.filter((h) => h.exitCode === 0)).toHaveLength(4);
    expect(working).toHaveLength(1);
    expect(readIfThere(pidFile(root)).trim()).toBe(String(working[0]!.pid));
  }, 30_000);

  it.skipIf(!existsSync(join(REPO, 'dist/qemu-hook.blob')))(
    'is started by a hook that Node ran from the startup snapshot (which has no script in argv)',
    async () => {
      const root = await hostWithSilentLibvirt();
      const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
      const blob = join(REPO, 'dist/qemu-hook.blob');
      const r = spawnSync(
        process.execPath,
        ['--snapshot-blob', blob, 'hook', 'win11', 'prepare', 'begin', '-'],
        {
          input: xml,
          encoding: 'utf8',
          env: { ...process.env, QEMU_HOOK_ROOT: root, QEMU_HOOK_REDEFINE_TIME_LIMIT_MS: '1500' },
        },
      );
      expect(r.stderr).toMatch(/the definition will be updated in the background/);
      expect(r.status).toBe(1);
      // The helper ran (from dist/cli/main.cjs beside the snapshot) and gave up on the silent libvirt.
      await waitFor(
        'the helper to give up',
        () => /redefine: gave up after 1\.5 s/.test(log(root)) || undefined,
        20_000,
        100,
      );
    },
    30_000,
  );

  it('takes over the pid file of a helper that died', async () => {
    const root = await hostWithSilentLibvirt();
    const dead = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
    mkdirSync(join(root, 'run/qemu-hook'), { recursive: true });
    writeFileSync(pidFile(root), dead);
    const child = helper(root, 60_000);
    // The helper removes the dead one's file before it writes its own: absent for a moment.
    await waitFor(
      'the take-over',
      () => readIfThere(pidFile(root)).trim() === String(child.pid) || undefined,
      15_000,
      50,
    );
    expect(child.exitCode).toBeNull();
  }, 30_000);
});
