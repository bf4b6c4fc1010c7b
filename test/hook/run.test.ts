import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/hook/logger.js';
import { type HookDeps, runHook } from '../../src/hook/run.js';
import { hostPaths } from '../../src/model/paths.js';
import { loadState } from '../../src/state/file.js';
import { domainXml, pciHostdev } from '../support/domain.js';
import { FakeDriverControl } from '../support/fake-driver.js';
import { workstation } from '../support/inventory.js';

let root: string;
let control: FakeDriverControl;
let redefines: [string, boolean][];
/** What each inventory read covered: "all", or the addresses asked for. */
let reads: string[];

const CONFIG = `domains:
  win11:
    devices:
      - { name: gpu, functions: all, match: { vendor: "10de", device: "2204" } }
  moved:
    devices:
      - { name: gpu, functions: all, match: { vendor: "10de", device: "2204" } }
    onAddressChange: restart
`;
const TAGGED = domainXml('win11', [
  pciHostdev('0000:01:00.0', 'ua-qemuhook-gpu'),
  pciHostdev('0000:01:00.1', 'ua-qemuhook-gpu-1'),
]);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'qh-run-'));
  await mkdir(join(root, 'etc/qemu-hook'), { recursive: true });
  await writeFile(join(root, 'etc/qemu-hook/config.yaml'), CONFIG);
  control = FakeDriverControl.of(
    { '0000:01:00.0': 'nvidia', '0000:01:00.1': 'snd_hda_intel' },
    { '0000:01:00.0': 'nouveau', '0000:01:00.1': 'snd_hda_intel' },
  );
  redefines = [];
  reads = [];
});
afterEach(() => rm(root, { recursive: true, force: true }));

function deps(extra: Partial<HookDeps> = {}): HookDeps {
  const paths = hostPaths(root);
  return {
    paths,
    inventory: {
      read: async () => {
        reads.push('all');
        return workstation();
      },
      bootId: async () => {
        reads.push('boot id');
        return workstation().bootId;
      },
    },
    control: async () => control,
    clock: { now: () => new Date('2026-11-25T12:00:00Z') },
    log: silentLogger,
    timeoutMs: 2000,
    scriptOwnerUid: process.getuid!(),
    scriptLog: join(root, 'scripts.log'),
    scheduleRedefine: (d, restart) => {
      redefines.push([d, restart]);
      return true;
    },
    ...extra,
  };
}

const ev = (domain: string, op: string, subop = 'begin') => ({ domain, op, subop, extra: '-' });
const stateFile = () => join(root, 'var/lib/qemu-hook/state.json');

describe('runHook', () => {
  it('starts the driver control warming up (libvirt connection) before it reads the host, for a start and a stop', async () => {
    const order: string[] = [];
    const watched = Object.assign(Object.create(control), { warmUp: () => order.push('warm up') });
    const d = deps({ control: async () => watched });
    const inventory = d.inventory;
    const traced: HookDeps = {
      ...d,
      inventory: {
        read: () => {
          order.push('inventory');
          return inventory.read();
        },
        bootId: () => {
          order.push('boot id');
          return inventory.bootId();
        },
      },
    };
    expect((await runHook(ev('win11', 'prepare'), TAGGED, traced)).exitCode).toBe(0);
    expect(order[0]).toBe('warm up');
    expect(order).toContain('inventory');
    order.length = 0;
    expect((await runHook(ev('win11', 'release', 'end'), TAGGED, traced)).exitCode).toBe(0);
    expect(order[0]).toBe('warm up');
    expect(order).toContain('boot id');
    // A stop with nothing recorded has nothing to give back: no connection.
    order.length = 0;
    expect((await runHook(ev('win11', 'release', 'end'), TAGGED, traced)).exitCode).toBe(0);
    expect(order).not.toContain('warm up');
  });

  it('prepare detaches, release gives back the original drivers, the state file ends empty', async () => {
    const start = await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(start).toEqual({ exitCode: 0, stdout: '', stderr: [] });
    expect((await loadState(stateFile())).records.map((r) => [r.address, r.originalDriver])).toEqual([
      ['0000:01:00.0', 'nvidia'],
      ['0000:01:00.1', 'snd_hda_intel'],
    ]);
    expect(await runHook(ev('win11', 'release', 'end'), TAGGED, deps())).toEqual({
      exitCode: 0,
      stdout: '',
      stderr: [],
    });
    expect(Object.fromEntries(control.drivers)).toEqual({
      '0000:01:00.0': 'nvidia',
      '0000:01:00.1': 'snd_hda_intel',
    });
    expect((await loadState(stateFile())).records).toEqual([]);
  });

  it('release reads the boot id only, never the inventory: the records say which devices', async () => {
    await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(reads).toEqual(['all']);
    reads = [];
    await runHook(ev('win11', 'release', 'end'), TAGGED, deps());
    expect(reads).toEqual(['boot id']);
    expect((await loadState(stateFile())).records).toEqual([]);
  });

  it('release after a refused prepare is a no-op', async () => {
    const refused = await runHook(
      ev('win11', 'prepare'),
      domainXml('win11', [pciHostdev('0000:02:00.0')]),
      deps(),
    );
    expect(refused.exitCode).toBe(1);
    expect(control.calls).toEqual([]);
    expect(await runHook(ev('win11', 'release', 'end'), TAGGED, deps())).toEqual({
      exitCode: 0,
      stdout: '',
      stderr: [],
    });
    expect(control.calls).toEqual([]);
  });

  it('a refusal is at most two plain lines on stderr, naming the domain', async () => {
    const r = await runHook(ev('win11', 'prepare'), domainXml('win11', [pciHostdev('0000:02:00.0')]), deps());
    expect(r.stderr.length).toBeGreaterThan(0);
    expect(r.stderr.length).toBeLessThanOrEqual(2);
    expect(r.stderr[0]).toMatch(/^qemu-hook: win11: /);
    expect(r.stderr.join('\n')).not.toMatch(/\n\s+at /);
  });

  it('a stale definition is refused with the move named and the redefine helper scheduled per policy', async () => {
    const stale = domainXml('moved', [
      pciHostdev('0000:05:00.0', 'ua-qemuhook-gpu'),
      pciHostdev('0000:05:00.1', 'ua-qemuhook-gpu-1'),
    ]);
    const r = await runHook(ev('moved', 'prepare'), stale, deps());
    expect(r.exitCode).toBe(1);
    expect(r.stderr[0]).toBe(
      'qemu-hook: moved: gpu moved 0000:05:00.0 → 0000:01:00.0; gpu-1 moved 0000:05:00.1 → 0000:01:00.1; the definition will be updated and the VM started again in the background; check with qemu-hook status',
    );
    expect(redefines).toEqual([['moved', true]]);
    expect(control.calls).toEqual([]);
  });

  it('an unconfigured domain does nothing; reconnect and unknown ops exit 0 even with a broken config', async () => {
    expect(await runHook(ev('other', 'prepare'), domainXml('other'), deps())).toEqual({
      exitCode: 0,
      stdout: '',
      stderr: [],
    });
    await writeFile(join(root, 'etc/qemu-hook/config.yaml'), 'domains: [ broken');
    expect((await runHook(ev('win11', 'reconnect'), TAGGED, deps())).exitCode).toBe(0);
    expect((await runHook(ev('win11', 'attach'), TAGGED, deps())).exitCode).toBe(0);
    expect((await runHook(ev('win11', 'something-new'), TAGGED, deps())).exitCode).toBe(0);
    const p = await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(p.exitCode).toBe(1);
    expect(p.stderr[0]).toMatch(/the config is invalid .* run qemu-hook check/);
  });

  it('a config broken elsewhere does not stop an unrelated VM', async () => {
    await writeFile(join(root, 'etc/qemu-hook/config.yaml'), `${CONFIG}  bad:\n    iommuGroup: sometimes\n`);
    expect((await runHook(ev('other', 'prepare'), domainXml('other'), deps())).exitCode).toBe(0);
    expect((await runHook(ev('bad', 'prepare'), domainXml('bad'), deps())).exitCode).toBe(1);
  });

  it("a misspelt key in another domain's entry refuses that domain only, naming the key", async () => {
    await writeFile(
      join(root, 'etc/qemu-hook/config.yaml'),
      `${CONFIG}  backup:\n    devices:\n      - { name: stick, typ: usb, match: { vendor: "0781", product: "5581" } }\n`,
    );
    const bad = await runHook(ev('backup', 'prepare'), domainXml('backup'), deps());
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr[0]).toMatch(
      /the config is invalid \(domains\.backup\.devices\[0\]: unknown key "typ": did you mean "type"\?/,
    );
    const win11 = await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(win11).toMatchObject({ exitCode: 0, stderr: [] });
  });

  it('malformed XML on stdin refuses the start in one line', async () => {
    const r = await runHook(ev('win11', 'prepare'), '<domain><name>win11', deps());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toHaveLength(1);
  });

  it('runs per-VM scripts before the detach on prepare and after the reattach on release, with argv and XML', async () => {
    const log = join(root, 'order.log');
    const script = async (dir: string, name: string, body: string) => {
      await mkdir(join(root, 'etc/libvirt/hooks/qemu.d/win11', dir), { recursive: true });
      const p = join(root, 'etc/libvirt/hooks/qemu.d/win11', dir, name);
      await writeFile(p, `#!/bin/sh\n${body}\n`);
      await chmod(p, 0o755);
    };
    const drivers = `cat /dev/null; echo "$(basename $QEMU_HOOK_SCRIPT) $* $(head -c 8)" >> ${log}`;
    await script('prepare/begin', '10-first', drivers);
    await script('prepare/begin', '20-second', drivers);
    await script('release/end', '10-after', drivers);
    const calls = () => control.calls.join(',');
    const seen: string[] = [];
    const original = control.detach.bind(control);
    control.detach = async (a) => {
      seen.push(await readFile(log, 'utf8'));
      return original(a);
    };
    await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(seen[0]).toBe(
      '10-first win11 prepare begin - <domain \n20-second win11 prepare begin - <domain \n',
    );
    await runHook(ev('win11', 'release', 'end'), TAGGED, deps());
    expect(calls()).toContain('reattach');
    expect((await readFile(log, 'utf8')).split('\n')[2]).toBe('10-after win11 release end - <domain ');
  });

  it('a failing prepare script refuses the start before anything is detached', async () => {
    await mkdir(join(root, 'etc/libvirt/hooks/qemu.d/win11/prepare/begin'), { recursive: true });
    const p = join(root, 'etc/libvirt/hooks/qemu.d/win11/prepare/begin/fail');
    await writeFile(p, '#!/bin/sh\nexit 3\n');
    await chmod(p, 0o755);
    const r = await runHook(ev('win11', 'prepare'), TAGGED, deps());
    expect(r.exitCode).toBe(1);
    expect(r.stderr[0]).toMatch(/per-VM script win11\/prepare\/begin\/fail/);
    expect(control.calls).toEqual([]);
  });

  it('migrate/restore print a corrected XML only when our entries moved', async () => {
    const same = await runHook(ev('win11', 'restore'), TAGGED, deps());
    expect(same).toEqual({ exitCode: 0, stdout: '', stderr: [] });
    const stale = domainXml('win11', [
      pciHostdev('0000:05:00.0', 'ua-qemuhook-gpu'),
      pciHostdev('0000:05:00.1', 'ua-qemuhook-gpu-1'),
    ]);
    const r = await runHook(ev('win11', 'migrate'), stale, deps());
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(TAGGED);
  });
});
