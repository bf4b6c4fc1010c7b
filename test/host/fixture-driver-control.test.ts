import {
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FAULTS_FILE,
  FixtureDriverControl,
  JOURNAL_FILE,
  PREFERRED_DRIVERS_FILE,
} from '../../src/host/fixture-driver-control.js';
import { SysfsInventoryReader } from '../../src/host/sysfs/inventory.js';
import { HostError, InvariantError, UsageError } from '../../src/model/errors.js';
import { hostPaths } from '../../src/model/paths.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { copyHost, type HostName, hostDir, scratchDir } from '../fixtures/fixture-hosts.js';

const GPU = PciAddress.parse('0000:01:00.0');
const AUDIO = PciAddress.parse('0000:01:00.1');
const VF0 = PciAddress.parse('0000:03:02.0');

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups) c();
  cleanups = [];
});

function copy(name: HostName = 'workstation'): string {
  const { root, cleanup } = copyHost(name);
  cleanups.push(cleanup);
  return root;
}

const devDir = (root: string, a: PciAddress) => join(root, 'sys/bus/pci/devices', a.toString());
const attr = (root: string, a: PciAddress, name: string) => readFileSync(join(devDir(root, a), name), 'utf8');
const journal = (root: string) =>
  existsSync(join(root, JOURNAL_FILE))
    ? readFileSync(join(root, JOURNAL_FILE), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { op: string; address: string; from: string | null; to: string | null })
    : [];

describe('FixtureDriverControl', () => {
  it('detach moves the driver link to vfio-pci, as sysfs would show it', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    expect(await ctl.currentDriver(GPU)).toBe('nvidia');
    await ctl.detach(GPU);
    expect(await ctl.currentDriver(GPU)).toBe('vfio-pci');
    expect(readlinkSync(join(devDir(root, GPU), 'driver'))).toBe('../../../../bus/pci/drivers/vfio-pci');
    expect(attr(root, GPU, 'driver_override')).toBe('vfio-pci\n');
    const drivers = join(root, 'sys/bus/pci/drivers');
    expect(readlinkSync(join(drivers, 'vfio-pci', GPU.toString()))).toBe(
      '../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0',
    );
    expect(existsSync(join(drivers, 'nvidia', GPU.toString()))).toBe(false);
    expect(existsSync(join(drivers, 'vfio-pci/unbind'))).toBe(true);
    // The inventory reader sees the change.
    const inv = await new SysfsInventoryReader(hostPaths(root)).read();
    expect(inv.pci.find((d) => d.address.equals(GPU))).toMatchObject({
      driver: 'vfio-pci',
      driverOverride: 'vfio-pci',
    });
  });

  it('detach of a device already on vfio-pci changes nothing', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.detach(VF0);
    expect(await ctl.currentDriver(VF0)).toBe('vfio-pci');
    expect(journal(root)).toEqual([]);
  });

  it('reattach lets the simulated kernel bind its preferred driver and clears driver_override', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.detach(GPU);
    await ctl.reattach(GPU);
    expect(await ctl.currentDriver(GPU)).toBe('nvidia');
    expect(attr(root, GPU, 'driver_override')).toBe('(null)\n');
    expect(existsSync(join(root, 'sys/bus/pci/drivers/vfio-pci', GPU.toString()))).toBe(false);
    expect(readlinkSync(join(root, 'sys/bus/pci/drivers/nvidia', GPU.toString()))).toContain('0000:01:00.0');
    // VF 0 was on vfio-pci when the host was generated; the kernel would give it to iavf.
    await ctl.reattach(VF0);
    expect(await ctl.currentDriver(VF0)).toBe('iavf');
    expect(journal(root)).toEqual([
      { op: 'detach', address: '0000:01:00.0', from: 'nvidia', to: 'vfio-pci' },
      { op: 'reattach', address: '0000:01:00.0', from: 'vfio-pci', to: 'nvidia' },
      { op: 'reattach', address: '0000:03:02.0', from: 'vfio-pci', to: 'iavf' },
    ]);
  });

  it('reattach follows preferred-drivers.json: another driver, or none', async () => {
    const root = copy();
    const file = join(root, PREFERRED_DRIVERS_FILE);
    const preferred = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    writeFileSync(
      file,
      JSON.stringify({ ...preferred, '0000:01:00.0': 'nouveau', '0000:01:00.1': undefined }),
    );
    const ctl = new FixtureDriverControl(root);
    await ctl.detach(GPU);
    await ctl.detach(AUDIO);
    await ctl.reattach(GPU);
    await ctl.reattach(AUDIO);
    expect(await ctl.currentDriver(GPU)).toBe('nouveau');
    expect(await ctl.currentDriver(AUDIO)).toBeNull();
  });

  it('reattach leaves a device on a host driver where it is', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.bindDriver(GPU, 'snd_hda_intel');
    await ctl.reattach(GPU);
    expect(await ctl.currentDriver(GPU)).toBe('snd_hda_intel');
  });

  it('bindDriver binds a loaded driver and restores driver_override', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.detach(GPU);
    await ctl.bindDriver(GPU, 'nvidia');
    expect(await ctl.currentDriver(GPU)).toBe('nvidia');
    expect(attr(root, GPU, 'driver_override')).toBe('(null)\n');
  });

  it('bindDriver to a driver that is not loaded leaves the device without one, as the kernel does', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.bindDriver(GPU, 'nouveau');
    expect(await ctl.currentDriver(GPU)).toBeNull();
    expect(existsSync(join(root, 'sys/bus/pci/drivers/nouveau'))).toBe(false);
    expect(journal(root).at(-1)).toEqual({
      op: 'bindDriver',
      address: '0000:01:00.0',
      from: 'nvidia',
      to: null,
    });
  });

  it('unbind leaves the device with no driver', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await ctl.unbind(AUDIO);
    expect(await ctl.currentDriver(AUDIO)).toBeNull();
    expect(existsSync(join(root, 'sys/bus/pci/drivers/snd_hda_intel', AUDIO.toString()))).toBe(false);
  });

  it('rejects an unknown device and a malformed driver name', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root);
    await expect(ctl.detach(PciAddress.parse('0000:09:00.0'))).rejects.toBeInstanceOf(HostError);
    await expect(ctl.currentDriver(PciAddress.parse('0000:09:00.0'))).rejects.toBeInstanceOf(HostError);
    await expect(ctl.bindDriver(GPU, '../../etc')).rejects.toBeInstanceOf(UsageError);
    expect(await ctl.currentDriver(GPU)).toBe('nvidia');
  });
});

describe('failure injection', () => {
  it('fails the Nth call of an operation before it changes anything', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root, { failures: [{ op: 'detach', call: 2 }] });
    await ctl.detach(GPU);
    await expect(ctl.detach(AUDIO)).rejects.toThrow(/injected failure/);
    expect(await ctl.currentDriver(AUDIO)).toBe('snd_hda_intel');
    expect(attr(root, AUDIO, 'driver_override')).toBe('(null)\n');
    await ctl.detach(AUDIO); // the third call goes through
    expect(await ctl.currentDriver(AUDIO)).toBe('vfio-pci');
  });

  it('counts all operations when no op is named', async () => {
    const root = copy();
    const ctl = new FixtureDriverControl(root, { failures: [{ call: 2 }] });
    await ctl.detach(GPU);
    await expect(ctl.reattach(GPU)).rejects.toBeInstanceOf(HostError);
    expect(await ctl.currentDriver(GPU)).toBe('vfio-pci');
  });

  it('reads failures for an address from faults.json, for a hook run in another process', async () => {
    const root = copy();
    writeFileSync(join(root, FAULTS_FILE), JSON.stringify([{ op: 'detach', address: '0000:01:00.1' }]));
    const ctl = new FixtureDriverControl(root);
    await ctl.detach(GPU);
    await expect(ctl.detach(AUDIO)).rejects.toThrow(/injected failure/);
    await ctl.reattach(GPU);
    expect(await ctl.currentDriver(GPU)).toBe('nvidia');
  });
});

describe('safety', () => {
  it('refuses the real root', () => {
    expect(() => new FixtureDriverControl('/')).toThrow(InvariantError);
    expect(() => new FixtureDriverControl('/tmp/..')).toThrow(InvariantError);
  });

  it('refuses a root whose sys/ leads out of it', () => {
    const root = copy();
    const elsewhere = join(root, '..', 'elsewhere');
    mkdirSync(elsewhere);
    rmSync(join(root, 'sys'), { recursive: true });
    symlinkSync(elsewhere, join(root, 'sys'));
    expect(() => new FixtureDriverControl(root)).toThrow(/not a fixture tree/);
  });

  it('refuses to write through a device link that leads out of the root', async () => {
    const root = copy();
    const outside = join(root, '..', 'outside-device');
    mkdirSync(outside);
    writeFileSync(join(outside, 'driver_override'), '(null)\n');
    const link = join(root, 'sys/bus/pci/devices', GPU.toString());
    rmSync(link);
    symlinkSync(outside, link);
    const ctl = new FixtureDriverControl(root);
    await expect(ctl.detach(GPU)).rejects.toBeInstanceOf(InvariantError);
    expect(readFileSync(join(outside, 'driver_override'), 'utf8')).toBe('(null)\n');
    expect(existsSync(join(outside, 'driver'))).toBe(false);
  });

  it('needs an existing root', () => {
    expect(() => new FixtureDriverControl(join(scratchDir(), 'qemu-hook-no-such-root'))).toThrow(HostError);
  });

  it('leaves the committed fixture alone when working on a copy', async () => {
    const before = readlinkSync(join(hostDir('workstation'), 'sys/bus/pci/devices/0000:01:00.0/driver'));
    const root = copy();
    await new FixtureDriverControl(root).detach(GPU);
    expect(readlinkSync(join(hostDir('workstation'), 'sys/bus/pci/devices/0000:01:00.0/driver'))).toBe(
      before,
    );
    expect(existsSync(join(hostDir('workstation'), JOURNAL_FILE))).toBe(false);
  });
});
