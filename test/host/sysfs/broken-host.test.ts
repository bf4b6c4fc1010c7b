import {
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SysfsInventoryReader } from '../../../src/host/sysfs/inventory.js';
import type { Inventory } from '../../../src/model/device.js';
import { hostPaths } from '../../../src/model/paths.js';
import { copyHost, type HostName } from '../../fixtures/fixture-hosts.js';

// Each test breaks a private copy of a fixture host the way a real host can be "broken".

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

const read = (root: string): Promise<Inventory> => new SysfsInventoryReader(hostPaths(root)).read();
const devDir = (root: string, addr: string) => join(root, 'sys/bus/pci/devices', addr);
const addresses = (inv: Inventory) => inv.pci.map((d) => d.address.toString());
const protectedList = (inv: Inventory) => inv.protectedDevices.map((p) => `${p.address} ${p.reason}`);

describe('a broken PCI attribute', () => {
  it('skips the device with a warning naming it, and reads the rest', async () => {
    const root = copy();
    unlinkSync(join(devDir(root, '0000:01:00.0'), 'modalias'));
    unlinkSync(join(devDir(root, '0000:01:00.0'), 'vendor'));
    const inv = await read(root);
    expect(addresses(inv)).not.toContain('0000:01:00.0');
    expect(addresses(inv)).toHaveLength(28);
    expect(inv.warnings.join('\n')).toMatch(/0000:01:00\.0: vendor is missing/);
    expect(inv.warnings.join('\n')).toMatch(/0000:01:00\.0: skipped/);
  });

  it('falls back to the separate attributes when modalias is garbled, without a warning', async () => {
    const root = copy();
    writeFileSync(join(devDir(root, '0000:01:00.0'), 'modalias'), 'garbage\n');
    const inv = await read(root);
    expect(inv.warnings).toEqual([]);
    expect(inv.pci.find((d) => d.address.toString() === '0000:01:00.0')).toMatchObject({
      vendor: '10de',
      device: '2204',
      subsystemDevice: '403b',
      classCode: '030000',
    });
  });

  it('skips a device whose driver link leads nowhere: no give-back could bind that driver', async () => {
    const root = copy();
    const link = join(devDir(root, '0000:05:00.0'), 'driver');
    unlinkSync(link);
    symlinkSync('../../../bus/pci/drivers/gone', link);
    const inv = await read(root);
    expect(addresses(inv)).not.toContain('0000:05:00.0');
    expect(addresses(inv)).toHaveLength(28);
    expect(inv.warnings).toContain(
      'PCI device 0000:05:00.0: its driver link names gone, which is not there; skipped',
    );
  });

  it('follows a driver link of another form than the kernel writes, even when a driver of its name exists', async () => {
    const root = copy();
    const dev = devDir(root, '0000:05:00.0');
    const named = readlinkSync(join(dev, 'driver')).split('/').at(-1)!;
    expect(existsSync(join(root, 'sys/bus/pci/drivers', named))).toBe(true);
    unlinkSync(join(dev, 'driver'));
    symlinkSync(`../../../elsewhere/${named}`, join(dev, 'driver'));
    const inv = await read(root);
    expect(addresses(inv)).not.toContain('0000:05:00.0');
    expect(inv.warnings).toContain(
      `PCI device 0000:05:00.0: its driver link names ${named}, which is not there; skipped`,
    );
  });

  it('reports an unexpected class value', async () => {
    const root = copy();
    unlinkSync(join(devDir(root, '0000:02:00.0'), 'modalias'));
    writeFileSync(join(devDir(root, '0000:02:00.0'), 'class'), 'nonsense\n');
    const inv = await read(root);
    expect(inv.warnings.join('\n')).toContain('0000:02:00.0: unexpected class "nonsense"');
    expect(addresses(inv)).not.toContain('0000:02:00.0');
  });

  it('reports an attribute that cannot be read (a folder where a file should be)', async () => {
    const root = copy();
    const modalias = join(devDir(root, '0000:01:00.0'), 'modalias');
    unlinkSync(modalias);
    mkdirSync(modalias);
    const inv = await read(root);
    expect(inv.warnings.join('\n')).toMatch(/0000:01:00\.0: cannot read .*modalias \(EISDIR\)/);
    // The separate attribute files still give the ids.
    expect(inv.pci.find((d) => d.address.toString() === '0000:01:00.0')?.device).toBe('2204');
  });

  it('reports a device that vanished after it was listed (dangling link)', async () => {
    const root = copy();
    rmSync(join(root, 'sys/devices/pci0000:00/0000:00:1c.4/0000:05:00.0'), { recursive: true });
    const inv = await read(root);
    expect(addresses(inv)).not.toContain('0000:05:00.0');
    expect(inv.warnings).toContain('PCI device 0000:05:00.0 disappeared while it was being read; skipped');
  });

  it('reads a VF whose PF is not listed as a plain function (the kernel removes VFs with their PF)', async () => {
    const root = copy();
    rmSync(join(root, 'sys/bus/pci/devices/0000:03:00.0'));
    const inv = await read(root);
    const vf = inv.pci.find((d) => d.address.toString() === '0000:03:02.1');
    expect(vf?.device).toBeDefined();
    expect(vf?.physfn).toBeNull();
  });
});

describe('a broken USB device', () => {
  it('is skipped with a warning when idVendor is missing', async () => {
    const root = copy();
    unlinkSync(join(root, 'sys/bus/usb/devices/3-2/idVendor'));
    const inv = await read(root);
    expect(inv.usb.map((u) => u.port)).not.toContain('3-2');
    expect(inv.usb.map((u) => u.port)).toContain('3-3');
    expect(inv.warnings.join('\n')).toMatch(/USB device 3-2: cannot read .*idVendor \(ENOENT\)/);
  });
});

describe('the root filesystem', () => {
  const setRoot = (root: string, device: string) => {
    const path = join(root, 'proc/mounts');
    const mounts = readFileSync(path, 'utf8').replace(/^\S+ \/ /m, `${device} / `);
    writeFileSync(path, mounts);
  };

  it.each([
    '/dev/root',
    'UUID=4b1c7f0e-2d3a-4e5f-8a9b-0c1d2e3f4a5b',
    '/dev/disk/by-uuid/4b1c7f0e',
    'rpool/ROOT/debian',
  ])('given as %s: warns that its controller is not protected, no crash', async (device) => {
    const root = copy();
    setRoot(root, device);
    const inv = await read(root);
    expect(protectedList(inv).filter((p) => p.endsWith('root-disk'))).toEqual([]);
    expect(inv.warnings.join('\n')).toContain(`cannot tell which disk holds the root filesystem (${device})`);
  });

  it('given as /dev/<vg>/<lv> resolves to the LVM mapping', async () => {
    const root = copy('twin-gpus');
    setRoot(root, '/dev/vg0/root');
    const inv = await read(root);
    expect(protectedList(inv)).toContain('0000:03:00.0 root-disk');
    expect(inv.warnings).toEqual([]);
  });

  it('uses the last mount on / (an initramfs rootfs may come first)', async () => {
    const root = copy();
    const path = join(root, 'proc/mounts');
    writeFileSync(path, `rootfs / rootfs rw 0 0\n${readFileSync(path, 'utf8')}`);
    expect(protectedList(await read(root))).toContain('0000:02:00.0 root-disk');
  });

  it('without proc/mounts: a warning', async () => {
    const root = copy();
    unlinkSync(join(root, 'proc/mounts'));
    const inv = await read(root);
    expect(inv.warnings.join('\n')).toMatch(
      /cannot find the root filesystem's disk: cannot read .*mounts \(ENOENT\)/,
    );
  });
});

describe('the default route', () => {
  const route = (iface: string) =>
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' +
    `${iface}\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n`;

  it('through a VF protects the VF, its bridge and its PF', async () => {
    const root = copy();
    writeFileSync(join(root, 'proc/net/route'), route('enp3s2f1'));
    const inv = await read(root);
    expect(protectedList(inv).filter((p) => p.endsWith('default-route'))).toEqual([
      '0000:00:1c.0 default-route',
      '0000:03:00.0 default-route',
      '0000:03:02.1 default-route',
    ]);
  });

  it('from IPv6 only, ignoring reject routes on lo', async () => {
    const root = copy();
    writeFileSync(join(root, 'proc/net/route'), route('').split('\n')[0]!);
    const zero = '0'.repeat(32);
    writeFileSync(
      join(root, 'proc/net/ipv6_route'),
      `${zero} 00 ${zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 enp3s0f1\n` +
        `${zero} 00 ${zero} 00 ${zero} ffffffff 00000001 00000000 00200200       lo\n`,
    );
    const inv = await read(root);
    expect(protectedList(inv).filter((p) => p.endsWith('default-route'))).toEqual([
      '0000:00:1c.0 default-route',
      '0000:03:00.1 default-route',
    ]);
  });

  it('through a virtual interface without lower links protects nothing, quietly', async () => {
    const root = copy();
    mkdirSync(join(root, 'sys/devices/virtual/net/wg0'));
    symlinkSync('../../devices/virtual/net/wg0', join(root, 'sys/class/net/wg0'));
    writeFileSync(join(root, 'proc/net/route'), route('wg0'));
    const inv = await read(root);
    expect(protectedList(inv).filter((p) => p.endsWith('default-route'))).toEqual([]);
    expect(inv.warnings).toEqual([]);
  });

  it('through an interface missing from sysfs: a warning', async () => {
    const root = copy();
    writeFileSync(join(root, 'proc/net/route'), route('ghost0'));
    expect((await read(root)).warnings.join('\n')).toContain('cannot follow network interface ghost0');
  });
});

describe('boot VGA', () => {
  it('is not protected once on vfio-pci', async () => {
    const root = copy('twin-gpus');
    const link = join(devDir(root, '0000:01:00.0'), 'driver');
    unlinkSync(link);
    symlinkSync('../../../../bus/pci/drivers/vfio-pci', link);
    expect(protectedList(await read(root))).not.toContain('0000:01:00.0 boot-vga');
  });
});

describe('missing pieces', () => {
  it('without pci.ids: names are null, no warning', async () => {
    const root = copy();
    rmSync(join(root, 'usr/share/misc/pci.ids'));
    const inv = await read(root);
    expect(inv.pci.every((d) => d.vendorName === null && d.deviceName === null)).toBe(true);
    expect(inv.warnings).toEqual([]);
  });

  it('without a boot id: null and a warning', async () => {
    const root = copy();
    rmSync(join(root, 'proc/sys/kernel/random/boot_id'));
    const inv = await read(root);
    expect(inv.bootId).toBeNull();
    expect(inv.warnings.join('\n')).toContain('cannot read the boot id');
  });

  it('without sys/ at all: an empty inventory with warnings, never a throw', async () => {
    const root = copy();
    rmSync(join(root, 'sys'), { recursive: true });
    const inv = await read(root);
    expect(inv.pci).toEqual([]);
    expect(inv.usb).toEqual([]);
    expect(inv.warnings.join('\n')).toContain('no PCI devices');
  });
});
