// Attack: the config (and what sits beside it) decides what root does, so only root may change it.
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/parse.js';
import { underRoot } from '../../../src/model/paths.js';
import { driverOf, hookLog, isRoot, runHook, setConfigKeys, statePath } from '../../support/attack.js';
import { cli, hostCopies } from '../../support/cli.js';

const copy = hostCopies();
const GPU = '0000:01:00.0';

describe('a config others can change is refused', () => {
  it('group-writable config.yaml: the hook refuses the start in one line naming the path and the chmod', () => {
    const root = copy('workstation');
    const config = join(root, 'etc/qemu-hook/config.yaml');
    chmodSync(config, 0o664);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `qemu-hook: win11: refused: ${config} is writable by group (mode 0664): anyone who can change it controls what qemu-hook does as root; run: chmod go-w ${config}`,
    ]);
    expect(driverOf(root, GPU)).toBe('nvidia');
    expect(existsSync(statePath(root))).toBe(false);
  });

  it('a world-writable config folder: release (not strict) does nothing and still exits 0', () => {
    const root = copy('workstation');
    chmodSync(join(root, 'etc/qemu-hook'), 0o777);
    const r = runHook(root, 'win11', 'release', 'end');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/etc\/qemu-hook is writable by group and others \(mode 0777\).*chmod go-w/);
  });

  it.skipIf(!isRoot)('a config owned by another user: refused, with the chown that fixes it', () => {
    const root = copy('workstation');
    const config = join(root, 'etc/qemu-hook/config.yaml');
    chownSync(config, 4321, 4321);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${config} is owned by uid 4321`);
    expect(r.stderr).toContain(`run: chown root:root ${config}`);
    // A reporting command warns; a command that changes the host refuses.
    const status = cli(['status', '--root', root]);
    expect(status.code).toBe(0);
    expect(status.stderr).toMatch(/warning: .*owned by uid 4321/);
    const recover = cli(['recover', '--root', root]);
    expect(recover.code).toBe(1);
    expect(recover.stderr).toMatch(/^qemu-hook: refused: .*owned by uid 4321/);
  });

  it('a world-writable fault-injection file is not obeyed (it would SIGKILL the hook)', () => {
    const root = copy('workstation');
    const faults = join(root, 'etc/qemu-hook/fault-injection');
    writeFileSync(faults, 'record\n');
    chmodSync(faults, 0o666);
    const r = runHook(root, 'win11', 'prepare');
    expect(r.code).toBe(1); // refused, not killed (a kill has no exit status)
    expect(r.stderr).toContain(`${faults} is writable by group and others`);
    expect(driverOf(root, GPU)).toBe('nvidia');
  });

  it('a world-writable state folder: recover refuses, the hook refuses', () => {
    const root = copy('workstation');
    const dir = join(root, 'var/lib/qemu-hook');
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    expect(runHook(root, 'win11', 'prepare').stderr).toContain(`${dir} is writable by group and others`);
    const r = cli(['recover', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`run: chmod go-w ${dir}`);
  });
});

describe('config values that would make root run or write anything', () => {
  const problems = (yaml: string) => parseConfig(yaml).errors;

  it('libvirt.uri: only local, non-executing transports', () => {
    expect(problems('libvirt: { uri: "qemu+ext:///system?command=/tmp/evil.sh" }')).toEqual([
      expect.stringMatching(/^libvirt\.uri: transport "ext" is not allowed/),
    ]);
    expect(problems('libvirt: { uri: "qemu:///system?command=/tmp/evil.sh" }')).toEqual([
      expect.stringMatching(/^libvirt\.uri: parameter "command" is not allowed/),
    ]);
    expect(problems('libvirt: { uri: "qemu+ssh://root@elsewhere/system" }')).toEqual([
      expect.stringMatching(/transport "ssh" is not allowed/),
    ]);
    expect(problems('libvirt: { uri: "qemu://elsewhere/system" }')).toEqual([
      expect.stringMatching(/a remote host \("elsewhere"\) is not allowed/),
    ]);
    expect(problems('libvirt: { uri: "qemu+unix:///system?socket=/run/x.sock" }')).toEqual([]);
  });

  it('stateFile and log.file: absolute, under the allowed folders', () => {
    expect(problems('stateFile: /etc/passwd')).toEqual([
      expect.stringMatching(
        /^stateFile: "\/etc\/passwd" must be an absolute file path under \/var\/lib\/qemu-hook/,
      ),
    ]);
    expect(problems('stateFile: /var/lib/qemu-hook/../../../etc/shadow')).toHaveLength(1);
    expect(problems('log: { file: relative.log }')).toEqual([expect.stringMatching(/^log\.file: /)]);
    expect(
      problems('stateFile: /run/qemu-hook/state.json\nlog: { file: /var/log/qemu-hook/hook.log }'),
    ).toEqual([]);
  });

  it('check reports them with exit 2, and the hook refuses a start of a domain the config names', () => {
    const root = copy('workstation');
    setConfigKeys(root, { libvirt: '{ uri: "qemu+ext:///system?command=/tmp/evil.sh" }' });
    const r = cli(['check', '--root', root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/libvirt\.uri: transport "ext" is not allowed/);
    const hook = runHook(root, 'win11', 'prepare');
    expect(hook.code).toBe(1);
    expect(hook.stderr).toMatch(/the config is invalid \(libvirt\.uri/);
  });

  it('a log.file outside the allowed folders is never written', () => {
    const root = copy('workstation');
    setConfigKeys(root, { log: '{ level: info, file: /etc/qemu-hook/owned.log }' });
    runHook(root, 'win11', 'release', 'end');
    expect(existsSync(join(root, 'etc/qemu-hook/owned.log'))).toBe(false);
    expect(readFileSync(hookLog(root), 'utf8')).toMatch(/config invalid/);
  });

  it('a config path cannot lead out of a fixture root', () => {
    expect(() => underRoot('/tmp/fixture', '/../../etc/passwd')).toThrow(/out of the root folder/);
    expect(underRoot('/tmp/fixture', '/var/lib/qemu-hook/state.json')).toBe(
      '/tmp/fixture/var/lib/qemu-hook/state.json',
    );
  });
});
