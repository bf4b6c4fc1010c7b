// install.sh --root and the resident hook: the units it writes (not started under --root), the
// server run as qemu-hook.service would run it, and libvirt's hook events through the installed
// front and the installed client; --no-resident and --uninstall take the units away.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { residentBuilt } from '../support/resident.js';
import {
  copyFixtureHost,
  fixtureDriver,
  type HostCopy,
  hookLog,
  installOk,
  REPO,
} from './support/installed-host.js';

const unitText = (host: HostCopy, unit: string) =>
  readFileSync(join(host.root, 'etc/systemd/system', unit), 'utf8');
const settingOf = (text: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(text)?.[1];

describe.skipIf(!residentBuilt)('install.sh --root: the resident hook', { timeout: 180_000 }, () => {
  let host: HostCopy;
  let server: ChildProcess | undefined;
  let said = '';
  let installOutput = '';

  beforeAll(async () => {
    host = copyFixtureHost('workstation');
    installOutput = await installOk(host.root);
  });
  afterAll(() => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    host?.cleanup();
  });

  it('writes qemu-hook.socket and qemu-hook.service for that root, and starts nothing', () => {
    expect(installOutput).toContain(
      `wrote ${host.root}/etc/systemd/system/qemu-hook.socket and .service, not started (installed below ${host.root})`,
    );
    const service = unitText(host, 'qemu-hook.service');
    const socket = unitText(host, 'qemu-hook.socket');
    expect(settingOf(service, 'Environment')).toBe(`QEMU_HOOK_ROOT=${host.root}`);
    expect(settingOf(service, 'ExecStart')).toMatch(
      new RegExp(`^/\\S+/node ${host.root}/usr/local/lib/qemu-hook/dist/cli/main.cjs serve$`),
    );
    expect(settingOf(service, 'KillMode')).toBe('process');
    expect(settingOf(socket, 'ListenStream')).toBe(`${host.root}/run/qemu-hook/hook.sock`);
    expect([settingOf(socket, 'SocketMode'), settingOf(socket, 'DirectoryMode')]).toEqual(['0600', '0700']);
    const client = join(host.root, 'usr/local/lib/qemu-hook/native/build/Release/qemu-hook-client');
    expect(statSync(client).mode & 0o7777).toBe(0o755);
    expect(existsSync(join(host.root, 'run/qemu-hook/hook.sock'))).toBe(false);
  });

  it("answers libvirt's events through the installed front and client, as the service would run it", async () => {
    const service = unitText(host, 'qemu-hook.service');
    const [command, ...args] = settingOf(service, 'ExecStart')!.split(' ');
    const [name, value] = settingOf(service, 'Environment')!.split('=');
    server = spawn(command!, args, {
      env: { PATH: process.env['PATH'], [name!]: value },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    server.stderr!.on('data', (d) => {
      said += d;
    });
    for (let i = 0; i < 200 && !said.includes('answering hook events'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(said).toContain(`answering hook events on ${host.root}/run/qemu-hook/hook.sock`);

    const xml = readFileSync(join(REPO, 'fixtures/hosts/workstation/etc/libvirt/qemu/win11.xml'), 'utf8');
    const event = (op: string, sub: string) =>
      spawnSync(host.hookFile, ['win11', op, sub, '-'], {
        input: xml,
        encoding: 'utf8',
        env: { LC_ALL: 'C', PATH: '/usr/sbin:/usr/bin:/sbin:/bin', QEMU_HOOK_LOG_LEVEL: 'debug' },
        timeout: 60_000,
      });
    const start = event('prepare', 'begin');
    expect(start.stderr).toBe('');
    expect(start.status).toBe(0);
    expect(fixtureDriver(host.root, '0000:01:00.0')).toBe('vfio-pci');
    expect(event('release', 'end').status).toBe(0);
    expect(fixtureDriver(host.root, '0000:01:00.0')).toBe('nvidia');
    const runs = hookLog(host).filter((l) => l.msg === 'hook run done');
    expect(runs.map((l) => [l.op, l['resident']])).toEqual([
      ['prepare', true],
      ['release', true],
    ]);

    server.kill('SIGTERM');
    await new Promise((r) => server!.once('exit', r));
    expect(said).toContain('stopped; 2 events taken by workers');
  });

  it('--no-resident removes the units; --uninstall removes them too', async () => {
    expect(await installOk(host.root, '--no-resident')).toContain("removed the resident hook's units");
    expect(existsSync(join(host.root, 'etc/systemd/system/qemu-hook.service'))).toBe(false);
    await installOk(host.root);
    expect(existsSync(join(host.root, 'etc/systemd/system/qemu-hook.socket'))).toBe(true);
    expect(await installOk(host.root, '--uninstall')).toContain("removed the resident hook's units");
    expect(existsSync(join(host.root, 'etc/systemd/system/qemu-hook.socket'))).toBe(false);
  });
});
