// Issue 11: a snapshot of a real host has no simulated kernel (var/lib/qemu-hook-fixture). It
// carries what systemd and logind answered for the hand-over (var/lib/qemu-hook-snapshot/services.json)
// and replays to the same devices, check and --simulate as the host it was taken from; the commands
// that write refuse it with one line. The single-GPU fixture hosts stand in for real hosts: their
// snapshot, with the simulated kernel taken out, is what a real host's snapshot looks like.
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packFolder, unpackArchive } from '../../src/host/snapshot/archive.js';
import { cli, HOSTS, MAIN } from '../support/cli.js';

const work = mkdtempSync(join(tmpdir(), 'qh-snapshot-handover-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FIXTURE_STATE = 'var/lib/qemu-hook-fixture';
const SERVICES = 'var/lib/qemu-hook-snapshot/services.json';
/** The fixture hosts with a simulated GPU kernel: single-GPU desktops with `handover:` domains. */
const SINGLE_GPU = readdirSync(HOSTS).filter((h) => existsSync(join(HOSTS, h, FIXTURE_STATE, 'kernel.json')));

/** The snapshot of a fixture, unpacked, its simulated kernel removed (and `drop` too), packed again. */
async function realLike(
  host: string,
  name: string,
  drop: string[] = [],
): Promise<{ file: string; dir: string }> {
  const taken = join(work, `${name}-taken.tar.gz`);
  const r = cli(['snapshot', '--root', join(HOSTS, host), '--output', taken]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const dir = join(work, name);
  mkdirSync(dir);
  await unpackArchive(taken, dir);
  for (const p of [FIXTURE_STATE, ...drop]) rmSync(join(dir, p), { recursive: true, force: true });
  const file = join(work, `${name}.tar.gz`);
  await packFolder(dir, file);
  return { file, dir };
}

const domainsOf = (host: string) =>
  readdirSync(join(HOSTS, host, 'etc/libvirt/qemu')).map((f) => f.replace(/\.xml$/, ''));

describe('the single-GPU fixture hosts', () => {
  it('are there', () => expect(SINGLE_GPU).toEqual(['intel-laptop', 'single-amd', 'single-nvidia']));
});

describe.each(SINGLE_GPU)('a snapshot of %s without its simulated kernel', { timeout: 240_000 }, (host) => {
  const root = join(HOSTS, host);
  let snap = { file: '', dir: '' };
  beforeAll(async () => {
    snap = await realLike(host, host);
  }, 60_000);

  it('holds what systemd and logind answered, and says so', () => {
    const r = cli(['snapshot', '--root', root, '--output', join(work, `${host}-again.tar.gz`)]);
    expect(r.stdout).toMatch(
      /^ {2}\d+ unit states?, \d+ sessions? \(systemd, logind: what the hand-over asks\)$/m,
    );
    const captured = JSON.parse(readFileSync(join(snap.dir, SERVICES), 'utf8'));
    const fixture = JSON.parse(readFileSync(join(root, FIXTURE_STATE, 'services.json'), 'utf8'));
    // The units the plan asks about, as the host has them; the sessions as logind lists them.
    for (const [unit, state] of Object.entries(captured.units)) expect(fixture.units[unit], unit).toBe(state);
    expect(Object.keys(captured.units).length).toBeGreaterThan(0);
    expect(captured.sessions).toEqual(fixture.sessions);
    expect(captured.unreadable).toBeUndefined();
  });

  it('replays to the same devices, check and --simulate --json as the fixture', () => {
    const both = (args: string[]) => {
      const a = cli([...args, '--root', root]);
      const b = cli([...args, '--root', snap.file]);
      return [
        { code: a.code, out: a.stdout.replaceAll(root, '<root>'), err: a.stderr.replaceAll(root, '<root>') },
        {
          code: b.code,
          out: b.stdout.replaceAll(snap.file, '<root>'),
          err: b.stderr.replaceAll(snap.file, '<root>'),
        },
      ];
    };
    const [devA, devB] = both(['devices', '--json']);
    expect(devB).toEqual(devA);
    const [checkA, checkB] = both(['check', '--json']);
    expect(checkB).toEqual(checkA);
    for (const domain of domainsOf(host))
      for (const event of ['prepare', 'release']) {
        const [a, b] = both(['--simulate', domain, event, '--json']);
        expect(b, `${domain} ${event}`).toEqual(a);
      }
    // The hand-over is really planned from the captured services: the display manager is stopped.
    const plan = JSON.parse(cli(['--simulate', 'gpu-vm', 'prepare', '--json', '--root', snap.file]).stdout);
    expect(plan.handover.map((s: { kind: string }) => s.kind)).toContain('stop-service');
  });
});

describe('a snapshot with neither a simulated kernel nor captured services', { timeout: 120_000 }, () => {
  let snap = { file: '', dir: '' };
  beforeAll(async () => {
    snap = await realLike('single-amd', 'bare', [SERVICES]);
  }, 60_000);

  it('plans with systemd and logind unknown, said in one line, never an internal error', () => {
    const r = cli(['--simulate', 'gpu-vm', 'prepare', '--root', snap.file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const unknown = r.stdout.split('\n').filter((l) => /unknown|not captured/.test(l));
    expect(unknown).toEqual([
      expect.stringMatching(
        /^warning: unknown: whether gdm\.service is active, the logind sessions: systemd and logind were not captured \(no var\/lib\/qemu-hook-snapshot\/services\.json/,
      ),
    ]);
    const json = JSON.parse(cli(['--simulate', 'gpu-vm', 'prepare', '--json', '--root', snap.file]).stdout);
    expect(json.warnings.filter((w: string) => w.includes('not captured'))).toHaveLength(1);
    // What needs no systemd is still planned: the holders, fbcon.
    expect(json.handover.map((s: { kind: string }) => s.kind)).toContain('wait-holders');
    expect(json.handover.map((s: { kind: string }) => s.kind)).not.toContain('stop-service');

    for (const args of [['check'], ['devices'], ['status'], ['recover', '--dry-run']]) {
      const c = cli([...args, '--root', snap.file]);
      expect(c.stderr, args.join(' ')).not.toMatch(/internal error|unexpected error|\n\s+at /);
      expect([0, 1], args.join(' ')).toContain(c.code);
    }
  });

  it('is refused by the commands that write: one line, exit 2, nothing written', () => {
    const line = (what: string) =>
      new RegExp(
        `^qemu-hook: (gpu-vm: refused: )?${what} changes the host, and .* is a snapshot \\(it has no var/lib/qemu-hook-fixture.*: a snapshot is for reading .*\\n$`,
      );
    const before = listTree(snap.dir);
    for (const [what, args] of [
      ['recover', ['recover']],
      ['apply', ['apply', '--yes']],
    ] as const) {
      for (const root of [snap.file, snap.dir]) {
        const r = cli([...args, '--root', root]);
        expect(r.stderr, `${what} ${root}`).toMatch(line(what));
        expect(r.code, what).toBe(2);
      }
    }
    for (const [what, args] of [
      ['the hook', ['hook', 'gpu-vm', 'prepare', 'begin', '-']],
      ['the hook', ['hook', 'gpu-vm', 'release', 'end', '-']],
      ['redefine', ['redefine', 'gpu-vm', 'redefine']],
    ] as const) {
      const r = spawnSync(process.execPath, [MAIN, ...args], {
        input: readFileSync(join(snap.dir, 'etc/libvirt/qemu/gpu-vm.xml')),
        env: { ...process.env, QEMU_HOOK_ROOT: snap.dir },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(r.stderr, args.join(' ')).toMatch(line(what));
      expect(r.status, args.join(' ')).toBe(2);
    }
    expect(listTree(snap.dir)).toEqual(before);
  });
});

// This machine, read-only: the snapshot reads /sys, /proc and asks systemd (which may not be
// reachable here); nothing is written but the archive, and the config lives in a temp folder.
const pciReadable = (() => {
  try {
    accessSync('/sys/bus/pci/devices', constants.R_OK);
    return readdirSync('/sys/bus/pci/devices').length > 0;
  } catch {
    return false;
  }
})();

describe.skipIf(!pciReadable)(
  'a snapshot of this machine (skipped when /sys/bus/pci cannot be read)',
  { timeout: 120_000 },
  () => {
    it('carries the hand-over services it could read, says what it could not, and replays read-only', async () => {
      const folder = join(work, 'this-machine-config');
      mkdirSync(folder, { mode: 0o700 });
      const config = join(folder, 'config.yaml');
      writeFileSync(
        config,
        [
          'domains:',
          '  gpu-vm:',
          '    devices: [{ name: gpu, match: { class: "0300" }, functions: all }]',
          '    handover: { services: [nvidia-persistenced.service] }',
          '',
        ].join('\n'),
      );
      const file = join(work, 'this-machine.tar.gz');
      const r = cli(['snapshot', '--config', config, '--output', file]);
      expect(r.code).toBe(0);
      console.log(`[this machine] ${r.stdout}`);
      expect(r.stdout).toMatch(/^ {2}\d+ unit states?, (\d+ sessions?|sessions unknown) \(systemd, logind/m);
      const dir = join(work, 'this-machine');
      mkdirSync(dir);
      await unpackArchive(file, dir);
      expect(existsSync(join(dir, FIXTURE_STATE))).toBe(false);
      const captured = JSON.parse(readFileSync(join(dir, SERVICES), 'utf8'));
      // The configured unit was asked about: answered, or said why not.
      expect({ ...captured.units, ...captured.unreadable }).toHaveProperty(['nvidia-persistenced.service']);
      if (captured.unreadable) expect(r.stdout).toMatch(/^could not read from systemd\/logind/m);

      const live = cli(['devices', '--json']);
      const replay = cli(['devices', '--json', '--root', file]);
      expect(replay.code).toBe(0);
      expect(JSON.parse(replay.stdout.replaceAll(`${file}/`, '/'))).toEqual(JSON.parse(live.stdout));

      for (const args of [['--simulate', 'gpu-vm', 'prepare'], ['check']]) {
        const c = cli([...args, '--root', file]);
        expect(c.stderr, args.join(' ')).not.toMatch(/internal error|unexpected error|\n\s+at /);
        expect([0, 1], args.join(' ')).toContain(c.code);
      }
      const refused = cli(['recover', '--root', file]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/is a snapshot .*a snapshot is for reading/);
    });
  },
);

/** Every path below `dir`, links not followed (sysfs links lead in circles). */
function listTree(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => {
      const path = join(prefix, e.name);
      return e.isDirectory() ? [path, ...listTree(dir, path)] : [path];
    })
    .sort();
}
