// Attack: per-VM scripts could be swapped after their check, had no time limit; config regexes and
// YAML aliases could hold the hook (and libvirt) for minutes.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configProblems, parseConfig } from '../../../src/config/parse.js';
import { findScripts, runScripts } from '../../../src/hook/scripts.js';
import { driverOf, runHook, setConfigKeys } from '../../support/attack.js';
import { cli, hostCopies } from '../../support/cli.js';

const copy = hostCopies();
const uid = process.getuid!();

function scriptDir(root: string, vm: string, op: string, sub: string): string {
  const dir = join(root, 'etc/libvirt/hooks/qemu.d', vm, op, sub);
  mkdirSync(dir, { recursive: true });
  for (let d = dir; d.length > root.length; d = join(d, '..')) chmodSync(d, 0o755);
  return dir;
}

describe('per-VM scripts', () => {
  it('a folder above the hooks folder writable by others: the script is refused (a rename there could swap it)', () => {
    const root = copy('workstation');
    const dir = scriptDir(root, 'win11', 'prepare', 'begin');
    const ran = join(root, 'ran');
    writeFileSync(join(dir, 'go'), `#!/bin/sh\ntouch ${ran}\n`, { mode: 0o755 });
    chmodSync(join(root, 'etc/libvirt'), 0o777);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/its folder .*etc\/libvirt is writable by group or others/);
    expect(existsSync(ran)).toBe(false);
  });

  it('a script swapped by a rename after it was checked is not run', async () => {
    const root = copy('workstation');
    const dir = scriptDir(root, 'win11', 'prepare', 'begin');
    const out = join(root, 'out');
    writeFileSync(join(dir, 'go'), `#!/bin/sh\necho checked > ${out}\n`, { mode: 0o755 });
    const event = { domain: 'win11', op: 'prepare', subop: 'begin', extra: '-' };
    const found = await findScripts(join(root, 'etc/libvirt/hooks/qemu.d'), event, {
      requiredUid: uid,
      trustFrom: root,
    });
    expect(found.map((s) => s.verdict)).toEqual(['run']);
    // The swap: a file anyone could have written takes the checked one's place.
    const evil = join(dir, '.evil');
    writeFileSync(evil, `#!/bin/sh\necho swapped > ${out}\n`, { mode: 0o777 });
    chmodSync(evil, 0o777);
    renameSync(evil, join(dir, 'go'));
    const [r] = await runScripts(found, event, '<domain/>', { logFile: join(root, 'scripts.log') });
    expect(r!.outcome).toBe('refused');
    expect(r!.error).toMatch(/writable by group or others/);
    expect(existsSync(out)).toBe(false);
  });

  it('a script that never ends is stopped after limits.scriptSeconds, with what it started, and the start refused', () => {
    const root = copy('workstation');
    setConfigKeys(root, { limits: '{ scriptSeconds: 1 }' });
    const dir = scriptDir(root, 'win11', 'prepare', 'begin');
    const pidFile = join(root, 'child.pid');
    writeFileSync(join(dir, 'hang'), `#!/bin/sh\nsleep 300 &\necho $! > ${pidFile}\nsleep 300\n`, {
      mode: 0o755,
    });
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/hang did not finish within 1 s and was stopped/);
    expect(driverOf(root, '0000:01:00.0')).toBe('nvidia');
    const child = Number(readFileSync(pidFile, 'utf8'));
    // Its process group went with it (gone, or a zombie waiting for an init that does not reap).
    const state = existsSync(`/proc/${child}/stat`)
      ? readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1]![0]
      : 'gone';
    expect(['gone', 'Z']).toContain(state);
  }, 40_000);

  it('a reconnect past limits.hookSeconds ends with exit 0 (a failed reconnect kills the VM)', () => {
    const root = copy('workstation');
    setConfigKeys(root, { limits: '{ hookSeconds: 1 }' });
    const dir = scriptDir(root, 'win11', 'reconnect', 'begin');
    writeFileSync(join(dir, 'hang'), '#!/bin/sh\nsleep 300\n', { mode: 0o755 });
    expect(runHook(root, 'win11', 'reconnect').code).toBe(0);
  }, 40_000);
});

describe('config bounds', () => {
  it('a catastrophic regex in name: is a config error that check reports', () => {
    const root = copy('workstation');
    writeFileSync(
      join(root, 'etc/qemu-hook/config.yaml'),
      'domains:\n  win11:\n    devices:\n      - { name: wheel, type: usb, match: { name: "^(a+)+$" } }\n',
    );
    const r = cli(['check', '--root', root]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/match\.name: a repeated group holds another repeat/);
    for (const bad of ['(a|aa)*b', '(\\w+\\s?)+$', '(.*a){12}', 'x'.repeat(201), '(a)\\1']) {
      const text = `domains: { v: { devices: [ { name: d, match: { name: ${JSON.stringify(bad)} } } ] } }`;
      expect(configProblems(parseConfig(text)), bad).not.toEqual([]);
    }
    expect(
      configProblems(
        parseConfig('domains: { v: { devices: [ { name: d, match: { name: "RTX (3090|4090)" } } ] } }'),
      ),
    ).toEqual([]);
  });

  it('a YAML alias bomb is refused at once instead of being expanded', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const bomb = `${levels.join('\n')}\n`;
    expect(bomb.length).toBeLessThan(1500);
    const r = parseConfig(bomb);
    expect(r.config).toBeNull();
    expect(r.errors).toEqual([expect.stringMatching(/once aliases are expanded/)]);
  }, 5_000);
});
