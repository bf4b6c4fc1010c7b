import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  SysfsDriverBinder,
  type SysfsWrite,
  writeAttribute,
} from '../../../src/host/libvirt/sysfs-driver-binder.js';
import { HostError, UsageError } from '../../../src/model/errors.js';
import { PciAddress } from '../../../src/model/pci-address.js';
import { devicePath, makeSysTree } from './support.js';

const gpu = PciAddress.parse('0000:01:00.0');
const audio = PciAddress.parse('0000:01:00.1');
const nic = PciAddress.parse('0000:03:00.0');

let root: string;
let sys: string;
let writes: Array<[string, string]>;

/** Real writes into the temp tree, remembered in order (paths relative to sys/). */
const recording: SysfsWrite = async (path, text) => {
  writes.push([path.slice(sys.length + 1), text]);
  await writeAttribute(path, text);
};

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'qemu-hook-sysfs-'));
  sys = await makeSysTree(
    root,
    [{ address: gpu.toString(), driver: 'vfio-pci' }, { address: audio.toString() }],
    ['vfio-pci', 'nvidia', 'snd_hda_intel'],
  );
  writes = [];
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('SysfsDriverBinder.currentDriver', () => {
  it('names the driver the device link points to', async () => {
    expect(await new SysfsDriverBinder(sys).currentDriver(gpu)).toBe('vfio-pci');
  });

  it('is null for a device without a driver', async () => {
    expect(await new SysfsDriverBinder(sys).currentDriver(audio)).toBeNull();
  });

  it('fails with a HostError for a device that does not exist', async () => {
    const err = await new SysfsDriverBinder(sys).currentDriver(nic).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect(err).toMatchObject({ code: 'ENOENT', path: devicePath(sys, nic.toString()) });
  });
});

describe('SysfsDriverBinder.bindDriver', () => {
  it('sets driver_override, unbinds, probes, then clears driver_override, in that order', async () => {
    await new SysfsDriverBinder(sys, recording).bindDriver(gpu, 'nvidia');
    const dev = 'bus/pci/devices/0000:01:00.0';
    expect(writes).toEqual([
      [`${dev}/driver_override`, 'nvidia'],
      [`${dev}/driver/unbind`, '0000:01:00.0'],
      ['bus/pci/drivers_probe', '0000:01:00.0'],
      [`${dev}/driver_override`, '\n'],
    ]);
    // The unbind went to the driver the device was on, through its link.
    expect(await readFile(join(sys, 'bus/pci/drivers/vfio-pci/unbind'), 'utf8')).toBe('0000:01:00.0');
    expect(await readFile(join(sys, 'bus/pci/drivers/nvidia/unbind'), 'utf8')).toBe('');
  });

  it('does not unbind a device that has no driver', async () => {
    await new SysfsDriverBinder(sys, recording).bindDriver(audio, 'snd_hda_intel');
    expect(writes.map(([path]) => path)).toEqual([
      'bus/pci/devices/0000:01:00.1/driver_override',
      'bus/pci/drivers_probe',
      'bus/pci/devices/0000:01:00.1/driver_override',
    ]);
    expect(await readFile(join(sys, 'bus/pci/drivers_probe'), 'utf8')).toBe('0000:01:00.1');
  });

  it('writes nothing when the device is already on that driver', async () => {
    await new SysfsDriverBinder(sys, recording).bindDriver(gpu, 'vfio-pci');
    expect(writes).toEqual([]);
  });

  it('clears driver_override even when the probe fails, and names the failed step', async () => {
    await unlink(join(sys, 'bus/pci/drivers_probe'));
    const err = await new SysfsDriverBinder(sys, recording)
      .bindDriver(gpu, 'nvidia')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect(err).toMatchObject({
      operation: 'probe',
      path: join(sys, 'bus/pci/drivers_probe'),
      code: 'ENOENT',
    });
    expect(writes.at(-1)).toEqual(['bus/pci/devices/0000:01:00.0/driver_override', '\n']);
    expect(await readFile(devicePath(sys, gpu.toString(), 'driver_override'), 'utf8')).toBe('\n');
  });

  it('never creates a missing attribute', async () => {
    await unlink(devicePath(sys, audio.toString(), 'driver_override'));
    const err = await new SysfsDriverBinder(sys).bindDriver(audio, 'snd_hda_intel').catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'HostError', operation: 'set driver_override', code: 'ENOENT' });
    await expect(readFile(devicePath(sys, audio.toString(), 'driver_override'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(sys, 'bus/pci/drivers_probe'), 'utf8')).toBe('');
  });

  it('refuses a driver name that is not one, before writing anything', async () => {
    const err = await new SysfsDriverBinder(sys, recording)
      .bindDriver(gpu, 'nvidia\n0000:00:1f.0')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(writes).toEqual([]);
  });
});

describe('SysfsDriverBinder.unbind', () => {
  it('unbinds through the current driver', async () => {
    await new SysfsDriverBinder(sys, recording).unbind(gpu);
    expect(writes).toEqual([['bus/pci/devices/0000:01:00.0/driver/unbind', '0000:01:00.0']]);
  });

  it('is a no-op for a device without a driver', async () => {
    await new SysfsDriverBinder(sys, recording).unbind(audio);
    expect(writes).toEqual([]);
  });
});
