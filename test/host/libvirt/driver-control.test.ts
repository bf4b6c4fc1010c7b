import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LibvirtConnection, type NodeDeviceConnection } from '../../../src/host/libvirt/connection.js';
import {
  VIR_ERR_NO_NODE_DEVICE,
  VIR_ERR_NO_SUPPORT,
  VIR_FROM_NODEDEV,
} from '../../../src/host/libvirt/constants.js';
import { LibvirtDriverControl } from '../../../src/host/libvirt/driver-control.js';
import { LibvirtError } from '../../../src/model/errors.js';
import { PciAddress } from '../../../src/model/pci-address.js';
import { addonBuilt, devicePath, fixtureUri, makeSysTree } from './support.js';

const gpu = PciAddress.parse('0000:01:00.0');
const audio = PciAddress.parse('0000:01:00.1');

let root: string;
let sys: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'qemu-hook-dc-'));
  sys = await makeSysTree(
    root,
    [{ address: gpu.toString(), driver: 'nvidia' }, { address: audio.toString() }],
    ['nvidia', 'vfio-pci'],
  );
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('LibvirtDriverControl, sysfs side', () => {
  const noLibvirt = () => Promise.reject(new Error('libvirt must not be used for this'));

  it('reads the current driver from sysfs without opening libvirt', async () => {
    const control = new LibvirtDriverControl(noLibvirt, sys);
    expect(await control.currentDriver(gpu)).toBe('nvidia');
    expect(await control.currentDriver(audio)).toBeNull();
  });

  it('binds a driver through sysfs without opening libvirt', async () => {
    const control = new LibvirtDriverControl(noLibvirt, sys);
    await control.bindDriver(audio, 'vfio-pci');
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(sys, 'bus/pci/drivers_probe'), 'utf8')).toBe('0000:01:00.1');
    expect(await readFile(devicePath(sys, audio.toString(), 'driver_override'), 'utf8')).toBe('\n');
  });
});

describe('LibvirtDriverControl lets go of each node device', () => {
  it('frees it after a detach or a reattach, failed or not: close() then really closes the connection', async () => {
    const freed: string[] = [];
    const fails = (name: string) => name.endsWith('_1');
    const device = (name: string) => ({
      name,
      detach: async () => {
        if (fails(name)) throw new Error(`detach of ${name} failed`);
      },
      reattach: async () => {
        if (fails(name)) throw new Error(`reattach of ${name} failed`);
      },
      free: () => freed.push(name),
    });
    const connection = {
      uri: 'fake:///',
      readOnly: false,
      listNodeDevices: async () => [],
      nodeDevice: async (name: string) => device(name),
      close: async () => {},
    } as unknown as NodeDeviceConnection;
    const control = new LibvirtDriverControl(async () => connection, sys);
    await control.detach(gpu);
    await control.reattach(gpu);
    await expect(control.detach(audio)).rejects.toThrow('detach of pci_0000_01_00_1 failed');
    await expect(control.reattach(audio)).rejects.toThrow('reattach of pci_0000_01_00_1 failed');
    expect(freed).toEqual(['pci_0000_01_00_0', 'pci_0000_01_00_0', 'pci_0000_01_00_1', 'pci_0000_01_00_1']);
  });
});

describe.skipIf(!addonBuilt)('LibvirtDriverControl against the test driver', () => {
  it('a freed node device refuses further calls', async () => {
    const c = await LibvirtConnection.open(fixtureUri);
    try {
      const d = await c.nodeDevice('pci_0000_01_00_0');
      d.free();
      await expect(d.xml()).rejects.toThrow(/node device was freed/);
      d.free(); // twice is harmless
    } finally {
      await c.close();
    }
  });

  function counting() {
    const opened: NodeDeviceConnection[] = [];
    const factory = async () => {
      const c = await LibvirtConnection.open(fixtureUri);
      opened.push(c);
      return c;
    };
    return { opened, factory };
  }

  it('detaches by the node device named for the address, surfacing "not supported" cleanly', async () => {
    const control = LibvirtDriverControl.forUri(fixtureUri, sys);
    try {
      const err = await control.detach(gpu).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LibvirtError);
      expect(err).toMatchObject({
        code: VIR_ERR_NO_SUPPORT,
        domain: VIR_FROM_NODEDEV,
        operation: `detach node device pci_0000_01_00_0 to vfio on ${fixtureUri}`,
      });
      await expect(control.reattach(audio)).rejects.toMatchObject({
        code: VIR_ERR_NO_SUPPORT,
        operation: `reattach node device pci_0000_01_00_1 on ${fixtureUri}`,
      });
    } finally {
      await control.close();
    }
  });

  it('reports an address libvirt does not know as VIR_ERR_NO_NODE_DEVICE', async () => {
    const control = LibvirtDriverControl.forUri(fixtureUri, sys);
    try {
      await expect(control.detach(PciAddress.parse('0000:0a:00.0'))).rejects.toMatchObject({
        name: 'LibvirtError',
        code: VIR_ERR_NO_NODE_DEVICE,
        message: expect.stringContaining('pci_0000_0a_00_0'),
      });
    } finally {
      await control.close();
    }
  });

  it('opens one connection on first use, shares it, and closes it', async () => {
    const { opened, factory } = counting();
    const control = new LibvirtDriverControl(factory, sys);
    expect(opened).toHaveLength(0);
    await Promise.allSettled([control.detach(gpu), control.detach(audio), control.reattach(gpu)]);
    expect(opened).toHaveLength(1);
    await control.close();
    expect((opened[0] as LibvirtConnection).closed).toBe(true);
    await control.close();
  });

  it('tries to open again after a failed open', async () => {
    let attempts = 0;
    const control = new LibvirtDriverControl(() => {
      attempts++;
      return attempts === 1 ? LibvirtConnection.open('test:///') : LibvirtConnection.open(fixtureUri);
    }, sys);
    await expect(control.detach(gpu)).rejects.toMatchObject({
      operation: expect.stringMatching(/^connect to /),
    });
    await expect(control.detach(gpu)).rejects.toMatchObject({ code: VIR_ERR_NO_SUPPORT });
    expect(attempts).toBe(2);
    await control.close();
  });
});
