import { existsSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, HOSTS, hostCopies } from '../support/cli.js';

const WS = join(HOSTS, 'workstation');
const copy = hostCopies();

/** One clear line: no stack trace, no blank noise. */
const oneLine = (s: string) => {
  const lines = s.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(s).not.toMatch(/\n\s+at /);
  return lines[0]!;
};

describe('qemu-hook CLI', () => {
  it('usage errors: one line, exit 2', () => {
    for (const args of [
      [],
      ['frobnicate'],
      ['devices', '--bogus'],
      ['--simulate', 'win11'],
      ['--simulate', 'win11', 'start'],
      ['devices', '--yes'],
    ]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r.stderr)).toMatch(
        /^qemu-hook: .*(qemu-hook (devices )?--help|prepare or release|does not apply)/,
      );
      expect(r.stdout).toBe('');
    }
  });

  it('--help and --version print to stdout, exit 0', () => {
    expect(cli(['--help'])).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('--simulate VM prepare|release'),
    });
    expect(cli(['--version']).stdout).toMatch(/^qemu-hook \d+\.\d+\.\d+\n$/);
  });

  it('a domain not in the config: a usage error naming the configured ones, exit 2', () => {
    for (const extra of [[], ['--json']]) {
      const r = cli(['--simulate', 'nosuchvm', 'prepare', '--root', WS, ...extra]);
      expect(r).toMatchObject({ code: 2, stdout: '' });
      expect(oneLine(r.stderr)).toMatch(
        /^qemu-hook: nosuchvm is not in the config \(.*config\.yaml\): configured: win11, router, backup$/,
      );
    }
  });

  it('--simulate release of a domain the config no longer names, with devices recorded: planned, as the hook does', () => {
    const root = copy('workstation');
    writeFileSync(
      join(root, 'var/lib/qemu-hook/state.json'),
      JSON.stringify({
        version: 1,
        records: [
          {
            domain: 'oldvm',
            entry: 'gpu',
            address: '0000:01:00.0',
            originalDriver: 'nvidia',
            bootId: null,
            phase: 'detached',
            since: '2026-01-01T00:00:00.000Z',
          },
        ],
      }),
    );
    const r = cli(['--simulate', 'oldvm', 'release', '--root', root]);
    expect(r.stdout).toMatch(/oldvm release: ok/);
    expect(r.stdout).toMatch(/0000:01:00\.0 .*reattach → nvidia/);
    expect(cli(['--simulate', 'oldvm', 'prepare', '--root', root]).code).toBe(2);
  });

  it('an invalid domain entry: every problem with its path, exit 2; that domain only', () => {
    const root = copy('workstation');
    const text = readFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'utf8').replace(
      / {2}win11:\n {4}devices:\n/,
      '  win11:\n    devices:\n      - { name: bad, match: { vendor: "zz" } }\n      - { name: b, match: { class: "1" } }\n',
    );
    writeFileSync(join(root, 'etc/qemu-hook/config.yaml'), text);
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^win11 prepare: REFUSED/);
    expect(r.stdout).toMatch(
      /refused: the config is invalid: domains\.win11\.devices\[0\]\.match\.vendor: "zz" is not a 16-bit hex id/,
    );
    expect(r.stdout).toMatch(
      /refused: the config is invalid: domains\.win11\.devices\[1\]\.match\.class: "1" is not a PCI class/,
    );
    // The other domains of the file are not held hostage by win11's typo.
    expect(cli(['--simulate', 'backup', 'prepare', '--root', root]).code).toBe(0);
    const chk = cli(['check', '--root', root]);
    expect(chk.code).toBe(2);
    expect(chk.stdout).toMatch(
      /win11: REFUSED: its config entry is invalid\n {2}domains\.win11\.devices\[0\]\.match\.vendor/,
    );
    expect(chk.stdout).toMatch(/\nbackup: ok\n/);
  });

  it('a problem outside any domain: every problem with its path, exit 2', () => {
    const root = copy('workstation');
    writeFileSync(
      join(root, 'etc/qemu-hook/config.yaml'),
      'libvrit: { uri: "qemu:///system" }\ndomains: {}\n',
    );
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(/^qemu-hook: .*config\.yaml: 1 problem; fix and run qemu-hook check$/),
      '  (top level): unknown key "libvrit": did you mean "libvirt"?',
    ]);
    const chk = cli(['check', '--root', root]);
    expect(chk.code).toBe(2);
    expect(chk.stderr).toContain('did you mean "libvirt"?');
  });

  it('check says what a start of each domain would do', () => {
    const r = cli(['check', '--root', WS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^win11: ok$/m);
    expect(r.stdout).toMatch(/^ {2}gpu: 0000:01:00\.0, detach \(by/m);
    expect(r.stdout).toMatch(/^ {2}gpu-1: 0000:01:00\.1, detach \(function of gpu\)/m);
    const twins = cli(['check', '--root', join(HOSTS, 'twin-gpus')]);
    expect(twins.code).toBe(1);
    expect(twins.stdout).toMatch(/^ml: REFUSED$/m);
    expect(twins.stdout).toMatch(
      /gpu: ambiguous: 0000:01:00\.0, 0000:02:00\.0, refuse \(.*matches 2 devices/,
    );
  });

  it('a malformed definition: one line naming the problem, exit 1', () => {
    const root = copy('workstation');
    writeFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), '<domain><name>win11</name><devices>');
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/^qemu-hook: /);
  });

  it('an unreadable sysfs attribute or a device that vanished: a warning, not a crash', () => {
    const root = copy('workstation');
    const dev = join(root, 'sys/bus/pci/devices/0000:05:00.0');
    unlinkSync(join(dev, 'class'));
    unlinkSync(join(dev, 'modalias')); // the reader takes ids and class from modalias when it can
    const r = cli(['devices', '--root', root]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: .*0000:05:00\.0/);
    // A dangling device link: the device disappeared between listing and reading.
    symlinkSync(
      '../../../devices/pci0000:00/0000:00:1c.4/0000:09:00.0',
      join(root, 'sys/bus/pci/devices/0000:09:00.0'),
    );
    const gone = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(gone.stderr).not.toMatch(/\n\s+at /);
    expect([0, 1]).toContain(gone.code);
  });

  it('pci.ids missing: ids only, names absent, still works', () => {
    const root = copy('workstation');
    rmSync(join(root, 'usr/share/misc/pci.ids'));
    const r = cli(['devices', '--root', root, '--json']);
    expect(r.code).toBe(0);
    const inv = JSON.parse(r.stdout);
    expect(inv.pci.every((d: { vendorName: unknown }) => d.vendorName === null)).toBe(true);
    expect(inv.host).toEqual([expect.stringMatching(/^no pci\.ids on this host .*install pciutils/)]);
  });

  it('devices on a host without IOMMU says so first, with the parameter for its CPU', () => {
    const r = cli(['devices', '--root', join(HOSTS, 'no-iommu')]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^host: this host has no active IOMMU .*amd_iommu=on iommu=pt/);
    expect(cli(['devices', '--root', WS]).stdout).not.toMatch(/^host: /m);
  });

  it('devices lists PCI with groups and protections, USB, SR-IOV', () => {
    const r = cli(['devices', '--root', WS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0000:01:00\.0 +030000 +10de:2204 +1458:403b +nvidia +13/);
    expect(r.stdout).toMatch(/\[host: root-disk\]/);
    expect(r.stdout).toMatch(/\[PF 4\/\d+ VFs enp3s0f0\]/);
    expect(r.stdout).toMatch(/3-2 +046d:c24f/);
  });

  it('status works as an ordinary reader and says when nothing is held', () => {
    const r = cli(['status', '--root', WS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/no devices held/);
    expect(JSON.parse(cli(['status', '--root', WS, '--json']).stdout)).toMatchObject({
      records: [],
      stale: [],
    });
  });

  it('--simulate refuses on a corrupt state file and leaves it where it is', () => {
    const root = copy('workstation');
    const state = join(root, 'var/lib/qemu-hook/state.json');
    writeFileSync(state, '{ not json');
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/state file is corrupt .*left as it is/);
    expect(readFileSync(state, 'utf8')).toBe('{ not json');
    expect(existsSync(`${state}.corrupt`)).toBe(false);
  });

  it('a corrupt state file is kept aside by recover (status only reads), named, never emptied silently', () => {
    const root = copy('workstation');
    const state = join(root, 'var/lib/qemu-hook/state.json');
    writeFileSync(state, '{ not json');
    for (const readOnly of [['status'], ['recover', '--dry-run']]) {
      const look = cli([...readOnly, '--root', root]);
      expect(look.code).toBe(1);
      expect(look.stderr).toMatch(/state file is corrupt/);
      expect(readFileSync(state, 'utf8')).toBe('{ not json');
      expect(existsSync(`${state}.corrupt`)).toBe(false);
    }
    const r = cli(['recover', '--root', root]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/state\.json\.corrupt/);
    expect(readFileSync(`${state}.corrupt`, 'utf8')).toBe('{ not json');
    // Later runs start from an empty state, and say that a file was kept aside.
    const later = cli(['status', '--root', root]);
    expect(later.code).toBe(0);
    expect(later.stderr).toMatch(/state\.json\.corrupt is a state file that could not be read/);
  });
});
