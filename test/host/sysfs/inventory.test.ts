import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SysfsInventoryReader } from '../../../src/host/sysfs/inventory.js';
import type { Inventory, PciDevice } from '../../../src/model/device.js';
import { hostPaths } from '../../../src/model/paths.js';
import { describedHost, full, HOST_NAMES, type HostName, hostDir } from '../../fixtures/fixture-hosts.js';

const read = (name: HostName): Promise<Inventory> =>
  new SysfsInventoryReader(hostPaths(hostDir(name))).read();

function dev(inv: Inventory, addr: string): PciDevice {
  const d = inv.pci.find((p) => p.address.toString() === addr);
  if (!d) throw new Error(`${addr} not in inventory`);
  return d;
}

function group(inv: Inventory, n: number): string[] {
  return inv.pci.filter((d) => d.iommuGroup === n).map((d) => d.address.toString());
}

describe.each(HOST_NAMES)('SysfsInventoryReader on fixture host %s', (name) => {
  it('reads every described PCI function with the described values, and no warning', async () => {
    const inv = await read(name);
    const host = await describedHost(name);
    expect(inv.warnings).toEqual([]);
    expect(inv.pci.map((d) => d.address.toString()).sort()).toEqual(host.pci.map((d) => full(d.addr)).sort());
    for (const want of host.pci) {
      const got = dev(inv, full(want.addr));
      const [vendor, device] = want.id.split(':');
      const [sv, sd] = (want.sub ?? '0000:0000').split(':');
      expect({
        vendor: got.vendor,
        device: got.device,
        subsystem: `${got.subsystemVendor}:${got.subsystemDevice}`,
        class: got.classCode,
        driver: got.driver,
        override: got.driverOverride,
        group: got.iommuGroup,
        bootVga: got.bootVga,
        net: got.netdevs,
        vfs: got.sriov?.vfs.map(String) ?? null,
      }).toEqual({
        vendor,
        device,
        subsystem: `${sv}:${sd}`,
        class: want.class,
        driver: want.driver ?? null,
        override: want.driverOverride ?? null,
        group: want.group ?? null,
        bootVga: want.bootVga ?? false,
        net: [...(want.net ?? [])].sort(),
        vfs: want.sriov ? want.sriov.vfs.map(full) : null,
      });
    }
  });

  it('gives each VF its PF and index, and sorts devices by address', async () => {
    const inv = await read(name);
    const sorted = [...inv.pci].sort((a, b) => a.address.compare(b.address));
    expect(inv.pci).toEqual(sorted);
    for (const pf of inv.pci.filter((d) => d.sriov)) {
      pf.sriov!.vfs.forEach((vf, i) => {
        expect(dev(inv, vf.toString()).physfn).toEqual({ address: pf.address, index: i });
      });
    }
  });

  it('reads USB devices, leaving out root hubs and interfaces', async () => {
    const inv = await read(name);
    const host = await describedHost(name);
    expect(inv.usb.map((u) => u.port).sort()).toEqual(host.usb.devices.map((d) => d.port).sort());
    const listed = readdirSync(join(hostDir(name), 'sys/bus/usb/devices'));
    expect(listed.some((n) => n.startsWith('usb'))).toBe(true);
    expect(listed.some((n) => n.includes(':'))).toBe(true);
  });

  it('gives each USB device the PCI controller of its bus', async () => {
    const inv = await read(name);
    const host = await describedHost(name);
    for (const d of host.usb.devices) {
      const root = host.usb.roots.find((r) => r.bus === Number(d.port.split('-')[0]));
      const want = root ? `0000:${root.controller}` : null;
      expect(inv.usb.find((u) => u.port === d.port)?.controller?.toString() ?? null).toBe(want);
    }
  });

  it('reads the boot id', async () => {
    expect((await read(name)).bootId).toBe((await describedHost(name)).bootId);
  });
});

describe('workstation', () => {
  it('has the RTX 3090 and its audio function alone in group 13, upstream root port in its own group', async () => {
    const inv = await read('workstation');
    const gpu = dev(inv, '0000:01:00.0');
    expect(gpu).toMatchObject({
      vendor: '10de',
      device: '2204',
      subsystemVendor: '1458',
      subsystemDevice: '403b',
      classCode: '030000',
      driver: 'nvidia',
      iommuGroup: 13,
      vendorName: 'NVIDIA Corporation',
      deviceName: 'GA102 [GeForce RTX 3090]',
    });
    expect(group(inv, 13)).toEqual(['0000:01:00.0', '0000:01:00.1']);
    expect(dev(inv, '0000:01:00.1').driver).toBe('snd_hda_intel');
    const port = dev(inv, '0000:00:01.0');
    expect(port.classCode.startsWith('0604')).toBe(true);
    expect(port.driver).toBe('pcieport');
    expect(group(inv, port.iommuGroup!)).toEqual(['0000:00:01.0']);
  });

  it('has an SR-IOV PF with 4 VFs, VF 0 already on vfio-pci with driver_override set', async () => {
    const inv = await read('workstation');
    const pf = dev(inv, '0000:03:00.0');
    expect(pf.netdevs).toEqual(['enp3s0f0']);
    expect(pf.sriov).toMatchObject({ totalVfs: 64, numVfs: 4 });
    expect(pf.sriov!.vfs.map(String)).toEqual([
      '0000:03:02.0',
      '0000:03:02.1',
      '0000:03:02.2',
      '0000:03:02.3',
    ]);
    expect(dev(inv, '0000:03:02.0')).toMatchObject({
      driver: 'vfio-pci',
      driverOverride: 'vfio-pci',
      netdevs: [],
    });
    expect(dev(inv, '0000:03:02.3')).toMatchObject({ driver: 'iavf', netdevs: ['enp3s2f3'] });
    expect(dev(inv, '0000:03:00.1').sriov).toEqual({ totalVfs: 64, numVfs: 0, vfs: [] });
  });

  it('tells the two identical SanDisk sticks apart by serial and port, names trimmed', async () => {
    const inv = await read('workstation');
    const sticks = inv.usb.filter((u) => u.vendor === '0781' && u.product === '5581');
    expect(sticks.map((s) => [s.port, s.serial])).toEqual([
      ['3-3', '4C530001230101108423'],
      ['3-4.1', '4C530001240101109511'],
    ]);
    expect(sticks[0]).toMatchObject({ busnum: 3, manufacturer: 'USB', productName: 'SanDisk 3.2Gen1' });
    const wheel = inv.usb.find((u) => u.port === '3-2');
    expect(wheel).toMatchObject({ vendor: '046d', product: 'c24f', serial: null, busnum: 3 });
  });

  it('protects the root NVMe and its bridge, the default-route NIC and the boot VGA iGPU, not the SR-IOV PF', async () => {
    const inv = await read('workstation');
    const list = inv.protectedDevices.map((p) => `${p.address} ${p.reason}`);
    expect(list).toEqual([
      '0000:00:02.0 boot-vga',
      '0000:00:17.0 mounted-disk',
      '0000:00:1b.0 root-disk',
      '0000:00:1f.6 default-route',
      '0000:02:00.0 root-disk',
    ]);
    const nvme = inv.protectedDevices.find((p) => p.address.toString() === '0000:02:00.0')!;
    expect(nvme.detail).toContain('/dev/nvme0n1p2');
    expect(inv.protectedDevices.find((p) => p.reason === 'default-route')!.detail).toContain('eno1');
  });
});

describe('protected devices on the other hosts', () => {
  const protectedOf = async (name: HostName) =>
    (await read(name)).protectedDevices.map((p) => `${p.address} ${p.reason}`);

  it('workstation-moved: the new NVMe at the GPU’s old address is the root disk', async () => {
    expect(await protectedOf('workstation-moved')).toEqual([
      '0000:00:01.0 root-disk',
      '0000:00:02.0 boot-vga',
      '0000:00:1b.0 mounted-disk',
      '0000:00:1f.6 default-route',
      '0000:01:00.0 root-disk',
      '0000:03:00.0 mounted-disk',
    ]);
  });

  it('twin-gpus: LVM root traced through dm-0 slaves, default route through br0 to its port, first GPU is the console', async () => {
    const inv = await read('twin-gpus');
    expect(inv.protectedDevices.map((p) => `${p.address} ${p.reason}`)).toEqual([
      '0000:00:1b.0 root-disk',
      '0000:00:1c.0 default-route',
      '0000:01:00.0 boot-vga',
      '0000:03:00.0 root-disk',
      '0000:04:00.0 default-route',
    ]);
    const nvme = inv.protectedDevices.find((p) => p.address.toString() === '0000:03:00.0')!;
    expect(nvme.detail).toContain('dm-0');
    expect(nvme.detail).toContain('nvme0n1p3');
    expect(inv.protectedDevices.find((p) => p.address.toString() === '0000:04:00.0')!.detail).toContain(
      'br0 via enp4s0',
    );
  });

  it('shared-group: root on the chipset SATA controller; the group sibling ahci controller holds /srv/data', async () => {
    const inv = await read('shared-group');
    expect(inv.protectedDevices.map((p) => `${p.address} ${p.reason}`)).toEqual([
      '0000:00:01.1 mounted-disk',
      '0000:00:02.0 boot-vga',
      '0000:00:17.0 root-disk',
      '0000:00:1f.6 default-route',
      '0000:02:00.0 mounted-disk',
    ]);
    expect(inv.protectedDevices.find((p) => p.address.toString() === '0000:02:00.0')!.detail).toBe(
      'controller of a disk the host uses (/srv/data on sdb1)',
    );
    expect(group(inv, 1)).toEqual([
      '0000:00:01.0',
      '0000:00:01.1',
      '0000:01:00.0',
      '0000:01:00.1',
      '0000:02:00.0',
    ]);
    expect(dev(inv, '0000:02:00.0').driver).toBe('ahci');
  });
});

describe('names', () => {
  it('are null with names: null', async () => {
    const inv = await new SysfsInventoryReader(hostPaths(hostDir('workstation')), { names: null }).read();
    expect(dev(inv, '0000:01:00.0')).toMatchObject({ vendorName: null, deviceName: null });
    expect(inv.warnings).toEqual([]);
  });
});

describe.each(HOST_NAMES)('bootId on fixture host %s', (name) => {
  it('is the boot id a full read finds', async () => {
    const reader = new SysfsInventoryReader(hostPaths(hostDir(name)), { names: null });
    const all = await reader.read();
    expect(all.bootId).not.toBeNull();
    expect(await reader.bootId()).toBe(all.bootId);
  });
});
