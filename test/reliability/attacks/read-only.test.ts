// Attack (small ones): commands that report wrote; release forgot a custom stateFile; the sh front
// failed a reconnect; fixture mode reached the real libvirt; apply demanded uid 0.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  driverOf,
  hookLog,
  isRoot,
  runHook,
  setConfigKeys,
  statePath,
  writeState,
} from '../../support/attack.js';
import { cli, hostCopies, MAIN, REPO } from '../../support/cli.js';

const copy = hostCopies();
const GPU = '0000:01:00.0';

/** Every path below `dir` with its size and mtime: a write anywhere changes it. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = statSync(p);
        out.push(`${relative(dir, p)} ${st.size} ${st.mtimeMs}`);
      } else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe('reporting commands never write', () => {
  it('status, recover --dry-run, --simulate, check and devices leave a corrupt state file and everything else as it was', () => {
    const root = copy('workstation');
    writeFileSync(statePath(root), '{ not json');
    const before = snapshot(root);
    for (const args of [
      ['status'],
      ['recover', '--dry-run'],
      ['--simulate', 'win11', 'release'],
      ['check'],
      ['devices'],
    ]) {
      cli([...args, '--root', root]);
      expect(snapshot(root), args.join(' ')).toEqual(before);
    }
  });
});

describe('release of a VM the config no longer names', () => {
  it('uses the configured stateFile', () => {
    const root = copy('workstation');
    setConfigKeys(root, { stateFile: '/var/lib/qemu-hook/custom.json' });
    const custom = join(root, 'var/lib/qemu-hook/custom.json');
    mkdirSync(join(root, 'var/lib/qemu-hook'), { recursive: true });
    // The GPU was taken for "gone", which has since left the config.
    const prepared = runHook(root, 'win11', 'prepare');
    expect(prepared.code).toBe(0);
    expect(driverOf(root, GPU)).toBe('vfio-pci');
    const taken = JSON.parse(readFileSync(custom, 'utf8')).records as { address: string }[];
    writeState(
      root,
      taken.map((r) => ({ ...r, domain: 'gone' })),
      custom,
    );
    const r = runHook(root, 'gone', 'release', 'end', "<domain type='kvm'><name>gone</name></domain>");
    expect(r.code).toBe(0);
    expect(driverOf(root, GPU)).toBe('nvidia');
    expect(JSON.parse(readFileSync(custom, 'utf8')).records).toEqual([]);
  });
});

describe('hooks/qemu', () => {
  it('a reconnect still exits 0 when mktemp fails (a failed reconnect kills the running VM)', () => {
    const root = copy('workstation');
    const calls = join(root, 'calls');
    const chain = join(root, 'chain');
    writeFileSync(chain, `#!/bin/sh\necho chain "$@" >> ${calls}\nexit 0\n`, { mode: 0o755 });
    const fakeNode = join(root, 'fake-node');
    writeFileSync(fakeNode, `#!/bin/sh\nexit 1\n`, { mode: 0o755 });
    const hook = join(root, 'hook');
    writeFileSync(
      hook,
      readFileSync(join(REPO, 'hooks/qemu'), 'utf8')
        .replace(/^NODE=.*# qemu-hook:node$/m, `NODE='${fakeNode}' # qemu-hook:node`)
        .replace(/^ROOT=.*# qemu-hook:root$/m, `ROOT='${root}' # qemu-hook:root`)
        .replace(/^CHAIN=.*# qemu-hook:chain.*$/m, `CHAIN='${chain}' # qemu-hook:chain`),
      { mode: 0o755 },
    );
    const env = { PATH: process.env['PATH'], TMPDIR: join(root, 'no-such-dir') };
    const reconnect = spawnSync(hook, ['win11', 'reconnect', 'begin', '-'], { input: '<domain/>', env });
    expect(reconnect.status).toBe(0);
    expect(readFileSync(calls, 'utf8')).toContain('chain win11 reconnect begin -');
    const prepare = spawnSync(hook, ['win11', 'prepare', 'begin', '-'], {
      input: '<domain/>',
      env,
      encoding: 'utf8',
    });
    expect(prepare.status).toBe(1);
    expect(prepare.stderr).toMatch(/cannot create a temporary file/);
  });
});

describe('fixture mode never reaches the machine’s libvirt', () => {
  it('the redefine helper rewrites the fixture’s definition instead of calling qemu:///system', () => {
    const root = copy('workstation-moved');
    const file = join(root, 'etc/libvirt/qemu/win11.xml');
    const before = readFileSync(file, 'utf8');
    const r = spawnSync(process.execPath, [MAIN, 'redefine', 'win11', 'redefine'], {
      env: { ...process.env, QEMU_HOOK_ROOT: root },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(0);
    expect(readFileSync(hookLog(root), 'utf8')).toMatch(/"outcome":"redefined"/);
    expect(readFileSync(file, 'utf8')).not.toBe(before);
  });
});

describe.skipIf(!isRoot)('apply', () => {
  it('does not demand uid 0: libvirt decides who may redefine', () => {
    const root = copy('workstation');
    chmodSync(root, 0o755);
    const config = join(root, 'etc/qemu-hook/config.yaml');
    const r = spawnSync(process.execPath, [MAIN, 'apply', '--vm', 'win11', '--yes', '--config', config], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      env: { PATH: process.env['PATH'], HOME: '/nonexistent' },
      timeout: 60_000,
    });
    expect(r.stderr).not.toMatch(/needs root/);
  });
});
