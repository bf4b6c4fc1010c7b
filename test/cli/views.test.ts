import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, HOSTS, hostCopies, MAIN } from '../support/cli.js';
import { waitFor } from '../support/wait.js';

const copy = hostCopies();

describe('devices --groups', { timeout: 120_000 }, () => {
  it('each group with its members, whether it can go to a VM, and which VM claims each device', () => {
    const r = cli(['devices', '--groups', '--root', join(HOSTS, 'workstation')]);
    expect(r.code).toBe(0);
    const group = (n: number) =>
      r.stdout.split(/\n(?=IOMMU group )/).find((g) => g.startsWith(`IOMMU group ${n}:`))!;
    // The GPU and its audio function: both claimed by win11's entry (functions: all).
    expect(group(13)).toMatch(/^IOMMU group 13: usable: win11 claims every member/);
    expect(group(13)).toMatch(/0000:01:00\.0 +10de:2204 +nvidia +win11\/gpu +NVIDIA Corporation GA102/);
    expect(group(13)).toMatch(/0000:01:00\.1 +10de:1aef +snd_hda_intel +win11\/gpu/);
    // The root disk: on its host driver, nobody's, and said to be the host's.
    expect(group(14)).toMatch(/^IOMMU group 14: not usable yet: 0000:02:00\.0 \(nvme\) on host drivers/);
    expect(group(14)).toMatch(/\[host: root-disk\]/);
    // A VF already on vfio-pci: usable as it is.
    expect(group(19)).toMatch(/^IOMMU group 19: usable: every member is on vfio-pci or on no driver/);
    // Bridges are not members that need a driver change.
    expect(group(1)).toMatch(/bridges only/);
  });

  it('a VM claiming only part of a group: not usable, naming what stays; iommuGroup: detach takes the rest', () => {
    const r = cli(['devices', '--groups', '--root', join(HOSTS, 'shared-group'), '--json']);
    expect(r.code).toBe(0);
    const g1 = JSON.parse(r.stdout).groups.find((g: { group: number }) => g.group === 1);
    expect(g1).toMatchObject({ usable: true, claimedBy: 'win11-detach' });
    const sata = g1.members.find((m: { address: string }) => m.address === '0000:02:00.0');
    expect(sata).toMatchObject({
      driver: 'ahci',
      bridge: false,
      claims: [{ domain: 'win11-detach', entry: '(group)' }],
    });
    const gpu = g1.members.find((m: { address: string }) => m.address === '0000:01:00.0');
    expect(gpu.claims.map((c: { domain: string }) => c.domain)).toEqual([
      'win11',
      'win11-detach',
      'win11-ignore',
    ]);
    expect(g1.members.filter((m: { bridge: boolean }) => m.bridge)).toHaveLength(2);

    // Without the VM that takes the group, the others claim only part of it.
    const root = copy('shared-group');
    const cfg = join(root, 'etc/qemu-hook/config.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(/iommuGroup: detach/, 'iommuGroup: require'));
    const partial = cli(['devices', '--groups', '--root', root]);
    expect(partial.stdout).toMatch(
      /IOMMU group 1: not usable: win11, win11-detach, win11-ignore claim only part of group 1; 0000:02:00\.0 \(ahci\) stays on the host/,
    );
  });

  it('without a config: the groups, and a note that claims are not shown', () => {
    const root = copy('workstation');
    writeFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'domains: [');
    const r = cli(['devices', '--groups', '--root', root]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/has problems \(qemu-hook check shows them\): claims not shown/);
    expect(r.stdout).toMatch(/IOMMU group 13: not usable yet/);
  });
});

describe('--simulate lists the per-VM scripts', { timeout: 120_000 }, () => {
  const script = (root: string, rel: string, mode: number) => {
    const path = join(root, 'etc/libvirt/hooks/qemu.d', rel);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, '#!/bin/sh\nexit 0\n');
    chmodSync(path, mode);
    return path;
  };
  const asRoot = process.getuid?.() === 0;

  it('release: the scripts after the devices are given back, even with no device recorded', () => {
    const root = copy('workstation');
    script(root, 'win11/release/end/x', 0o755);
    const r = cli(['--simulate', 'win11', 'release', '--root', root]);
    expect(r.stdout).not.toMatch(/release does nothing/);
    expect(r.stdout).toMatch(/nothing recorded for this domain: no device to give back/);
    expect(r.stdout).toMatch(
      /scripts \(qemu\.d\/win11\/release\/end\/\), in this order, after the devices are given back:/,
    );
    expect(r.stdout).toMatch(
      asRoot ? /\n {2}run +win11\/release\/end\/x\n/ : /REFUSE +win11\/release\/end\/x \(it is owned by uid/,
    );
    // Release failures are not the start's: exit 0 either way.
    expect(r.code).toBe(0);
    const json = JSON.parse(cli(['--simulate', 'win11', 'release', '--root', root, '--json']).stdout);
    expect(json.scripts).toEqual([
      expect.objectContaining({
        name: 'win11/release/end/x',
        when: 'after',
        verdict: asRoot ? 'run' : 'refuse',
      }),
    ]);
  });

  it('prepare: in the order the hook runs them, before the device steps; a script it would refuse refuses the plan', () => {
    const root = copy('workstation');
    script(root, 'win11/prepare/begin/20-second', 0o755);
    script(root, 'win11/prepare/begin/10-first', 0o755);
    script(root, 'win11/prepare/begin/README', 0o644);
    const r = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    const lines = r.stdout.split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(
      at(/scripts \(qemu\.d\/win11\/prepare\/begin\/\), in this order, before the devices are detached:/),
    ).toBe(1);
    expect(at(/10-first/)).toBeLessThan(at(/20-second/));
    expect(at(/20-second/)).toBeLessThan(at(/^ {2}DEVICE /));
    expect(r.stdout).toMatch(/skip +win11\/prepare\/begin\/README \(not executable\)/);
    if (asRoot) expect(r.code).toBe(0);

    chmodSync(join(root, 'etc/libvirt/hooks/qemu.d/win11/prepare/begin/20-second'), 0o775);
    const refused = cli(['--simulate', 'win11', 'prepare', '--root', root]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^win11 prepare: REFUSED/);
    expect(refused.stdout).toMatch(
      /refused: refused to run .*(20-second: it is writable by group|10-first: it is owned)/,
    );
  });

  it('a VM that is not configured but has scripts: the hook runs them, and --simulate says so', () => {
    const root = copy('workstation');
    script(root, 'plainvm/prepare/begin/x', 0o755);
    const r = cli(['--simulate', 'plainvm', 'prepare', '--root', root]);
    expect(r.stdout).toMatch(/plainvm is not in the config: the hook only runs its scripts/);
    expect(r.stdout).toMatch(/plainvm\/prepare\/begin\/x/);
  });
});

const LINES = [
  // As pino wrote them before: numeric level, the domain twice.
  '{"level":30,"time":1764658800000,"pid":1,"domain":"win11","op":"prepare","subop":"begin","devices":["gpu=0000:01:00.0:detach"],"msg":"plan ok"}',
  '{"level":"warn","time":"2025-12-02T07:00:01.000Z","pid":2,"domain":"backup","op":"prepare","subop":"begin","errors":["stick: no device matches"],"msg":"start refused by plan"}',
  '{"level":"error","time":"2025-12-02T07:00:02.000Z","pid":3,"domain":"win11","op":"release","subop":"end","failed":[{"address":"0000:01:00.0","error":"busy"}],"msg":"some devices were not given back; run qemu-hook recover"}',
];

describe('qemu-hook log', { timeout: 120_000 }, () => {
  const logRoot = () => {
    const root = copy('workstation');
    mkdirSync(join(root, 'var/log/libvirt'), { recursive: true });
    writeFileSync(join(root, 'var/log/libvirt/qemu-hook.log'), `${LINES.join('\n')}\n`);
    return root;
  };
  const env = { TZ: 'UTC' };

  it('one line per event: time, level as a word, the VM once, the event, the message, the fields', () => {
    const r = cli(['log', '--root', logRoot()], { env });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toEqual([
      '2025-12-02 07:00:00  INFO   win11  prepare/begin  plan ok  devices=gpu=0000:01:00.0:detach',
      '2025-12-02 07:00:01  WARN   backup  prepare/begin  start refused by plan  errors=["stick: no device matches"]',
      '2025-12-02 07:00:02  ERROR  win11  release/end  some devices were not given back; run qemu-hook recover  failed=[{"address":"0000:01:00.0","error":"busy"}]',
    ]);
  });

  it('--vm picks one VM; --json gives its events as JSON lines, levels as words', () => {
    const root = logRoot();
    expect(cli(['log', '--root', root, '--vm', 'backup'], { env }).stdout).toMatch(/^[^\n]*backup[^\n]*\n$/);
    const json = cli(['log', '--root', root, '--vm', 'win11', '--json'])
      .stdout.split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(json.map((e) => [e.level, e.msg])).toEqual([
      ['info', 'plan ok'],
      ['error', 'some devices were not given back; run qemu-hook recover'],
    ]);
  });

  it('no log yet: a note, exit 0', () => {
    const r = cli(['log', '--root', copy('workstation')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/no log at .*qemu-hook\.log yet/);
  });

  let follower: ChildProcess | undefined;
  afterEach(() => {
    follower?.kill();
    follower = undefined;
  });

  it('--follow prints new events as they come, across a truncation and a rotation', async () => {
    const root = logRoot();
    const file = join(root, 'var/log/libvirt/qemu-hook.log');
    let out = '';
    follower = spawn(process.execPath, [MAIN, 'log', '--follow', '--root', root, '--vm', 'win11'], {
      env: { ...process.env, ...env },
    });
    follower.stdout!.on('data', (b) => {
      out += String(b);
    });
    const seen = (text: string) =>
      waitFor(`"${text}" in the output`, () => (out.includes(text) ? true : undefined));
    await seen('plan ok');
    const event = (msg: string) =>
      `${JSON.stringify({ level: 'info', time: '2025-12-02T08:00:00.000Z', domain: 'win11', op: 'prepare', subop: 'begin', msg })}\n`;
    appendFileSync(file, event('appended'));
    await seen('appended');
    // copytruncate: the same file, emptied, then written again.
    truncateSync(file, 0);
    appendFileSync(file, event('after truncate'));
    await seen('after truncate');
    // A rotation by rename: the next event goes to a new file at the same path.
    renameSync(file, `${file}.1`);
    writeFileSync(file, event('after rotation'));
    await seen('after rotation');
    expect(out.match(/appended/g)).toHaveLength(1);
    expect(out).not.toMatch(/backup/);
  });

  it("the hook's own log: level words, the domain once per line, and qemu-hook log reads it", () => {
    const root = copy('workstation');
    const xml = readFileSync(join(root, 'etc/libvirt/qemu/win11.xml'), 'utf8');
    const hook = cli(['hook', 'win11', 'prepare', 'begin', '-'], {
      env: { QEMU_HOOK_ROOT: root },
      input: xml,
    });
    expect(hook.code).toBe(0);
    const lines = readFileSync(join(root, 'var/log/libvirt/qemu-hook.log'), 'utf8')
      .split('\n')
      .filter(Boolean);
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) {
      expect(line.match(/"domain":/g), line).toHaveLength(1);
      expect(JSON.parse(line).level).toMatch(/^(info|warn|error|debug)$/);
    }
    const shown = cli(['log', '--root', root]).stdout;
    expect(shown).toMatch(/ INFO +win11 +prepare\/begin +plan ok /);
    expect(shown).toMatch(/detached to vfio-pci +address=0000:01:00\.0 +originalDriver=nvidia/);
  });
});
