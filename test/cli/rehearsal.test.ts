import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { removeLeftBehind, withPrivateFolder } from '../../src/cli/resident/private-folder.js';
import { Rehearsal } from '../../src/cli/resident/rehearsal.js';
import { rehearseStartAndStop, SandboxDriverControl } from '../../src/cli/resident/rehearsal-sandbox.js';
import { rehearseHandOver } from '../../src/cli/resident/worker.js';
import { loadConfigFile } from '../../src/config/load.js';
import { SysfsInventoryReader } from '../../src/host/sysfs/inventory.js';
import { hostPaths } from '../../src/model/paths.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { treeHash } from '../reliability/support/host.js';
import { record, writeState } from '../support/attack.js';
import { hostCopies } from '../support/cli.js';

// A resident hook's worker rehearses its event while it waits (src/cli/resident/rehearsal.ts): it
// must read the host and change nothing, and give way the moment its event comes.

const copy = hostCopies();

async function rehearsalOf(root: string, quietMs = 0) {
  const paths = hostPaths(root);
  const { config } = await loadConfigFile(paths.configFile);
  return new Rehearsal(paths, config, quietMs);
}

describe('the resident worker’s rehearsal', () => {
  it('runs every step of its rounds on a fixture host and leaves every file as it was', async () => {
    const root = copy('workstation');
    // A device on record too: the release step then checks the recorded one.
    writeState(root, [record('win11', '0000:01:00.0', 'nvidia')]);
    const before = treeHash(root);
    const rehearsal = await rehearsalOf(root);
    // 3 rounds: the host read, 3 VMs planned, a release's checks, a VM's start and stop on a sandbox
    expect(rehearsal.steps).toBe(18);
    expect(await rehearsal.start()).toBe(rehearsal.steps);
    expect(treeHash(root)).toEqual(before);
  });

  it('counts only the steps that ran through, and leaves a corrupt state file where it is', async () => {
    const root = copy('workstation');
    writeFileSync(join(root, 'var/lib/qemu-hook/state.json'), '{ torn');
    const before = treeHash(root);
    expect(await (await rehearsalOf(root)).start()).toBe(0);
    // The event moves it aside and says so; a rehearsal only reads.
    expect(treeHash(root)).toEqual(before);
  });

  it('reads nothing on the word of a config others can write', async () => {
    const root = copy('workstation');
    chmodSync(join(root, 'etc/qemu-hook/config.yaml'), 0o666);
    expect(await (await rehearsalOf(root)).start()).toBe(0);
  });

  it('stops before its first step when the event comes during the quiet time', async () => {
    const rehearsal = await rehearsalOf(copy('workstation'), 50);
    const running = rehearsal.start();
    rehearsal.stop();
    expect(await running).toBe(0);
  });

  it('leaves the worker at its own priority, for the event, once it is over', async () => {
    const rehearsal = await rehearsalOf(copy('workstation'));
    const was = getPriority();
    expect(await rehearsal.start()).toBe(rehearsal.steps);
    expect(getPriority()).toBe(was);
  });

  it("takes the worker's hand-over as a step of each round, when given one", async () => {
    const root = copy('workstation');
    const paths = hostPaths(root);
    const { config } = await loadConfigFile(paths.configFile);
    let handOvers = 0;
    const rehearsal = new Rehearsal(paths, config, 0, undefined, async () => handOvers++);
    expect(rehearsal.steps).toBe(21);
    expect(await rehearsal.start()).toBe(21);
    expect(handOvers).toBe(3);
  });
});

describe("the worker's hand-over rehearsal", () => {
  it('takes a connection of its own over as an event is taken, and leaves nothing behind', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'qemu-hook-test-'));
    const was = process.env['TMPDIR'];
    process.env['TMPDIR'] = tmp;
    try {
      expect(await rehearseHandOver()).toBe(true); // the request read whole, through the event's code
      expect(await rehearseHandOver()).toBe(true);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      if (was === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = was;
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

/** `f` with TMPDIR set to a fresh folder; resolves with f's result and what was left in the folder. */
async function inPrivateTmp<T>(f: (tmp: string) => Promise<T>): Promise<{ result: T; left: string[] }> {
  const tmp = mkdtempSync(join(tmpdir(), 'qemu-hook-test-'));
  const was = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  try {
    const result = await f(tmp);
    return { result, left: readdirSync(tmp) };
  } finally {
    if (was === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = was;
    rmSync(tmp, { recursive: true, force: true });
  }
}

describe("the rehearsal's whole start and stop, on a sandbox", () => {
  async function sandboxOf(root: string) {
    const paths = hostPaths(root);
    const { config } = await loadConfigFile(paths.configFile);
    const reader = new SysfsInventoryReader(paths);
    return (domain: string, stopped: () => boolean = () => false) =>
      rehearseStartAndStop(paths, config!, domain, reader, stopped);
  }

  it("runs a VM's start through the hook's code and changes nothing of the host: no driver, state, log or script", async () => {
    const root = copy('workstation');
    // Per-VM scripts for both events, which would leave a mark outside the host if they ran.
    const marks = mkdtempSync(join(tmpdir(), 'qemu-hook-test-marks-'));
    for (const event of ['prepare/begin', 'release/end']) {
      const dir = join(root, 'etc/libvirt/hooks/qemu.d/win11', event);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'mark'), `#!/bin/sh\ntouch ${marks}/${event.replace('/', '-')}\n`, {
        mode: 0o755,
      });
    }
    const before = treeHash(root);
    const rehearse = await sandboxOf(root);
    const { result, left } = await inPrivateTmp(() => rehearse('win11'));
    expect(result).toBe(0); // the start went through: every device detached (in memory) and recorded
    expect(treeHash(root)).toEqual(before);
    expect(readdirSync(marks)).toEqual([]);
    expect(left).toEqual([]); // the sandbox is gone
    rmSync(marks, { recursive: true, force: true });
  });

  it("starts from the host's records: a device another VM holds is refused, in the sandbox only", async () => {
    const root = copy('workstation');
    writeState(root, [record('other', '0000:01:00.0', 'nvidia')]);
    const before = treeHash(root);
    const { result } = await inPrivateTmp(async () => (await sandboxOf(root))('win11'));
    expect(result).toBe(1);
    expect(treeHash(root)).toEqual(before);
  });

  it('says there is nothing to run for a VM without a definition file, and refuses a corrupt state file as the event would', async () => {
    const root = copy('workstation');
    rmSync(join(root, 'etc/libvirt/qemu/win11.xml'));
    const rehearse = await sandboxOf(root);
    expect(await rehearse('win11')).toBeNull();
    writeFileSync(join(root, 'var/lib/qemu-hook/state.json'), '{ torn');
    await expect(rehearse('backup')).rejects.toThrow(/state/);
  });

  it('ends at its next step once stopped, leaving nothing behind', async () => {
    const root = copy('workstation');
    const rehearse = await sandboxOf(root);
    let calls = 0;
    // Stopped as the event comes, at the run's first device step.
    const stopped = () => ++calls > 3;
    const before = treeHash(root);
    const { result, left } = await inPrivateTmp(() =>
      rehearse('win11', stopped).catch((err: Error) => err.message),
    );
    expect(result).toBe('the rehearsal stopped'); // the start gave up, and the stop never ran
    expect(left).toEqual([]);
    expect(treeHash(root)).toEqual(before);
  });

  it('removes its folder at the exit of a process that leaves in the middle of it', async () => {
    const { left } = await inPrivateTmp(async () => {
      const before = new Set(process.rawListeners('exit'));
      let inside = '';
      void withPrivateFolder(async (dir) => {
        inside = dir;
        await new Promise(() => {}); // the worker leaves before this ends
      });
      const added = process.rawListeners('exit').filter((l) => !before.has(l));
      expect(existsSync(inside)).toBe(true);
      expect(added.length).toBe(1);
      (added[0] as () => void)(); // what the process's exit calls (and only that)
      return inside;
    });
    expect(left).toEqual([]);
  });
});

describe("a killed worker's folders", () => {
  it('are removed for its pid only, and only those made private, not a look-alike or a link', async () => {
    const { left } = await inPrivateTmp(async (tmp) => {
      const pid = 4_000_001; // no process: what a worker killed mid-step left
      const made = (name: string, mode: number) => {
        mkdirSync(join(tmp, name), { mode });
        chmodSync(join(tmp, name), mode);
        writeFileSync(join(tmp, name, 'state.json'), '{}');
      };
      made(`qemu-hook-rehearsal-${pid}-a1b2c3`, 0o700); // the worker's: removed
      made(`qemu-hook-rehearsal-${pid}-d4e5f6`, 0o755); // not private: no one's to remove
      made(`qemu-hook-rehearsal-${pid + 1}-a1b2c3`, 0o700); // another worker's
      mkdirSync(join(tmp, 'elsewhere'));
      symlinkSync(join(tmp, 'elsewhere'), join(tmp, `qemu-hook-rehearsal-${pid}-link`));
      // And what withPrivateFolder makes carries the pid it is removed by.
      await withPrivateFolder(async (dir) => {
        expect(dir.startsWith(join(tmp, `qemu-hook-rehearsal-${process.pid}-`))).toBe(true);
      });
      removeLeftBehind(pid);
    });
    expect(left.sort()).toEqual([
      'elsewhere',
      `qemu-hook-rehearsal-${4_000_001}-d4e5f6`,
      `qemu-hook-rehearsal-${4_000_001}-link`,
      `qemu-hook-rehearsal-${4_000_002}-a1b2c3`,
    ]);
  });
});

describe('the sandbox driver control', () => {
  it('moves drivers in memory as libvirt and the kernel would, and refuses once stopped', async () => {
    const root = copy('workstation');
    let stopped = false;
    const control = new SandboxDriverControl(join(root, 'sys'), () => stopped);
    const gpu = PciAddress.parse('0000:01:00.0');
    expect(await control.currentDriver(gpu)).toBe('nvidia');
    await control.detach(gpu);
    expect(await control.currentDriver(gpu)).toBe('vfio-pci');
    await control.reattach(gpu);
    expect(await control.currentDriver(gpu)).toBe('nvidia');
    await control.unbind(gpu);
    expect(await control.currentDriver(gpu)).toBeNull();
    await control.bindDriver(gpu, 'nouveau');
    expect(await control.currentDriver(gpu)).toBe('nouveau');
    stopped = true;
    await expect(control.detach(gpu)).rejects.toThrow(/stopped/);
  });
});
