// Properties of the built program (dist/) that the sources alone do not show: what the bundle
// changes in its libraries, how it writes, and which Node modules a start pays for.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, HOSTS, hostCopies, MAIN, REPO, tempDirs } from '../support/cli.js';

const copy = hostCopies();

function withDescription(text: string): string {
  const root = copy('workstation');
  const file = join(root, 'etc/libvirt/qemu/win11.xml');
  const xml = readFileSync(file, 'utf8');
  writeFileSync(file, xml.replace('</uuid>', `</uuid>\n  <description>${text}</description>`));
  return root;
}

describe('XML entities in the bundle (xmldom with its HTML table loaded lazily)', () => {
  it('reads the five XML entities and character references', () => {
    const root = withDescription('GPU &amp; NVMe &lt;vfio&gt; &quot;games&quot; &apos;box&apos; &#x41;&#66;');
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).ok).toBe(true);
  });

  it('refuses an HTML-only entity, as XML must, in one line', () => {
    const root = withDescription('a&nbsp;b');
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/win11\.xml.*nbsp/);
  });
});

describe('output', () => {
  it('stops quietly when its reader goes away', async () => {
    const child = spawn(process.execPath, [MAIN, 'devices', '--root', join(HOSTS, 'workstation')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Close our end before the program writes (it takes ~100 ms to start): its first write fails with EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
      child.on('close', (c, s) => resolve([c, s])),
    );
    expect(signal).toBeNull();
    expect(code).not.toBeNull();
    expect(stderr).toBe('');
  });
});

describe('what a start loads', () => {
  // Each VM event starts the program several times. Node loads a built-in module when it is first
  // required (and builds its stdio streams when first touched); the common paths must not.
  function modulesLoaded(args: string[], env: NodeJS.ProcessEnv = {}, input = ''): string[] {
    const probe = join(copy('workstation'), 'probe.cjs');
    writeFileSync(
      probe,
      "process.on('exit', () => require('fs').writeFileSync(process.env.PROBE_OUT, process.moduleLoadList.join('\\n')));\n",
    );
    const outFile = `${probe}.out`;
    const r = cli(args, { env: { ...env, NODE_OPTIONS: `--require ${probe}`, PROBE_OUT: outFile }, input });
    expect(r.code).toBe(0);
    const loaded = readFileSync(outFile, 'utf8').split('\n');
    expect(loaded).toContain('NativeModule vm'); // the probe saw the run
    return loaded;
  }

  it('--simulate prepare loads neither stdio streams nor fs/promises', () => {
    const loaded = modulesLoaded(['--simulate', 'win11', 'prepare', '--root', join(HOSTS, 'workstation')]);
    for (const heavy of [
      'NativeModule net',
      'NativeModule stream',
      'NativeModule fs/promises',
      'NativeModule tty',
    ])
      expect(loaded).not.toContain(heavy);
  });

  it('a prepare through the hook, with no per-VM scripts, loads neither child_process nor crypto', () => {
    const root = copy('workstation');
    const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
    const loaded = modulesLoaded(['hook', 'win11', 'prepare', 'begin', '-'], { QEMU_HOOK_ROOT: root }, xml);
    // It did the work: the GPU is recorded as detached.
    expect(readFileSync(join(root, 'var/lib/qemu-hook/state.json'), 'utf8')).toContain('0000:01:00.0');
    for (const heavy of ['NativeModule child_process', 'NativeModule crypto'])
      expect(loaded).not.toContain(heavy);
  });
});

describe.skipIf(!existsSync(join(REPO, 'dist/qemu-hook.blob')))(
  'the startup snapshot hooks/qemu starts Node from',
  () => {
    it('runs a prepare and a release as the entry does, from a copy of the program elsewhere', () => {
      const root = copy('workstation');
      const program = copy('workstation'); // any private folder will do
      cpSync(join(REPO, 'dist'), join(program, 'dist'), { recursive: true });
      const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
      const hook = (...event: string[]) =>
        spawnSync(
          process.execPath,
          ['--snapshot-blob', join(program, 'dist/qemu-hook.blob'), 'hook', ...event],
          {
            input: xml,
            encoding: 'utf8',
            env: { PATH: process.env.PATH, QEMU_HOOK_ROOT: root },
          },
        );
      const state = () =>
        JSON.parse(readFileSync(join(root, 'var/lib/qemu-hook/state.json'), 'utf8')).records;
      const prepare = hook('win11', 'prepare', 'begin', '-');
      expect(prepare.stderr).toBe('');
      expect(prepare.status).toBe(0);
      expect(state().map((r: { address: string }) => r.address)).toContain('0000:01:00.0');
      const release = hook('win11', 'release', 'end', '-');
      expect(release.status).toBe(0);
      expect(state()).toEqual([]);
    });
  },
);

describe("the hook's account of its time", () => {
  it("logs at debug where a run's time went: Node's start, its CPU, and the phases the event had", () => {
    const root = copy('workstation');
    const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
    const env = { QEMU_HOOK_ROOT: root, QEMU_HOOK_LOG_LEVEL: 'debug' };
    expect(cli(['hook', 'win11', 'prepare', 'begin', '-'], { input: xml, env }).code).toBe(0);
    expect(cli(['hook', 'win11', 'release', 'end', '-'], { input: xml, env }).code).toBe(0);
    const done = readFileSync(join(root, 'var/log/libvirt/qemu-hook.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['msg'] === 'hook run done');
    const prepare = done.find((l) => l['op'] === 'prepare');
    const release = done.find((l) => l['op'] === 'release');
    for (const k of ['ms', 'cpuMs', 'startMs', 'configMs', 'inventoryMs', 'controlMs'])
      expect(prepare?.[k], `prepare's ${k}`).toEqual(expect.any(Number));
    expect(prepare!['ms']).toBeGreaterThanOrEqual(prepare!['startMs'] as number);
    // A release acts on the recorded devices only: it reads the boot id, never the inventory.
    expect(release?.['bootIdMs']).toEqual(expect.any(Number));
    expect(release).not.toHaveProperty('inventoryMs');
  });
});

describe("check and the hook's startup snapshot", () => {
  const dirs = tempDirs('dist');
  /** A copy of the built program (dist/ and the package file beside it) whose snapshot record says `record`. */
  function programWith(record: ((made: string) => string) | null): string {
    const dir = dirs();
    cpSync(join(REPO, 'dist'), join(dir, 'dist'), { recursive: true });
    cpSync(join(REPO, 'package.json'), join(dir, 'package.json'));
    const file = join(dir, 'dist/qemu-hook.blob.node');
    if (record) writeFileSync(file, record(readFileSync(file, 'utf8')));
    return join(dir, 'dist/cli/main.cjs');
  }
  const check = (main: string) =>
    spawnSync(process.execPath, [main, 'check', '--root', join(HOSTS, 'workstation')], { encoding: 'utf8' });

  it.skipIf(!existsSync(join(REPO, 'dist/qemu-hook.blob')))(
    'says nothing of a snapshot made for this node and CPU, and says so with the fix when node changed',
    () => {
      const fits = check(programWith(null));
      expect(fits.stdout).not.toMatch(/startup snapshot/);
      const stale = check(programWith((made) => made.replace(/^\d+ /, '1 ')));
      expect(stale.status).toBe(fits.status);
      expect(stale.stdout).toMatch(
        /^host: the hook's startup snapshot does not fit: it was made for another .*node.*run install\.sh again/m,
      );
    },
  );
});
