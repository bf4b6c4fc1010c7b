import type { Inventory, PciDevice, ProtectedDevice, UsbDevice } from '../../src/model/device.js';
import { type HexId, type PciClassCode, parseHexId, parsePciClass } from '../../src/model/ids.js';
import { PciAddress } from '../../src/model/pci-address.js';

// Small in-memory hosts for pure tests of the matcher and the planner.

export interface PciSpec {
  address: string;
  ids: string; // "10de:2204"
  subsystem?: string; // "1458:403b"
  class?: string; // "030000"
  driver?: string | null;
  group?: number | null;
  bootVga?: boolean;
  name?: [string, string];
  netdevs?: string[];
  vfs?: string[];
  physfn?: { address: string; index: number };
}

export function pci(s: PciSpec): PciDevice {
  const [vendor, device] = s.ids.split(':') as [string, string];
  const [sv, sd] = s.subsystem ? (s.subsystem.split(':') as [string, string]) : [null, null];
  return {
    kind: 'pci',
    address: PciAddress.parse(s.address),
    vendor: parseHexId(vendor) as HexId,
    device: parseHexId(device) as HexId,
    subsystemVendor: sv ? parseHexId(sv) : null,
    subsystemDevice: sd ? parseHexId(sd) : null,
    classCode: parsePciClass(s.class ?? '030000') as PciClassCode,
    driver: s.driver === undefined ? 'some-driver' : s.driver,
    driverOverride: null,
    iommuGroup: s.group === undefined ? null : s.group,
    bootVga: s.bootVga ?? false,
    vendorName: s.name?.[0] ?? null,
    deviceName: s.name?.[1] ?? null,
    netdevs: s.netdevs ?? [],
    sriov: s.vfs
      ? { totalVfs: s.vfs.length, numVfs: s.vfs.length, vfs: s.vfs.map((a) => PciAddress.parse(a)) }
      : null,
    physfn: s.physfn ? { address: PciAddress.parse(s.physfn.address), index: s.physfn.index } : null,
  };
}

export function usb(
  port: string,
  ids: string,
  serial: string | null = null,
  names: [string, string] = ['Maker', 'Thing'],
  controller: string | null = null,
): UsbDevice {
  const [v, p] = ids.split(':') as [string, string];
  const [bus, rest] = port.split('-') as [string, string];
  return {
    kind: 'usb',
    port,
    vendor: parseHexId(v)!,
    product: parseHexId(p)!,
    serial,
    busnum: Number(bus),
    devnum: rest.length + 1,
    manufacturer: names[0],
    productName: names[1],
    controller: controller === null ? null : PciAddress.parse(controller),
  };
}

export function host(devices: {
  pci?: PciDevice[];
  usb?: UsbDevice[];
  protected?: [string, ProtectedDevice['reason']][];
  bootId?: string;
}): Inventory {
  return {
    pci: devices.pci ?? [],
    usb: devices.usb ?? [],
    protectedDevices: (devices.protected ?? []).map(([a, reason]) => ({
      address: PciAddress.parse(a),
      reason,
      detail: '',
    })),
    bootId: devices.bootId ?? 'boot-1',
    warnings: [],
  };
}

/** A workstation: GPU + audio in group 13, NVMe root disk, boot VGA iGPU, SR-IOV NIC. */
export function workstation(): Inventory {
  return host({
    pci: [
      pci({
        address: '0000:00:02.0',
        ids: '8086:4680',
        driver: 'i915',
        group: 0,
        bootVga: true,
        name: ['Intel Corporation', 'AlderLake-S GT1'],
      }),
      pci({ address: '0000:00:01.0', ids: '8086:460d', class: '060400', driver: 'pcieport', group: 1 }),
      pci({
        address: '0000:01:00.0',
        ids: '10de:2204',
        subsystem: '1458:403b',
        driver: 'nvidia',
        group: 13,
        name: ['NVIDIA Corporation', 'GA102 [GeForce RTX 3090]'],
      }),
      pci({
        address: '0000:01:00.1',
        ids: '10de:1aef',
        subsystem: '1458:403b',
        class: '040300',
        driver: 'snd_hda_intel',
        group: 13,
      }),
      pci({ address: '0000:02:00.0', ids: '144d:a808', class: '010802', driver: 'nvme', group: 14 }),
      pci({
        address: '0000:03:00.0',
        ids: '8086:1572',
        class: '020000',
        driver: 'i40e',
        group: 15,
        netdevs: ['enp3s0f0'],
        vfs: ['0000:03:02.0', '0000:03:02.1'],
      }),
      pci({
        address: '0000:03:02.0',
        ids: '8086:154c',
        class: '020000',
        driver: 'iavf',
        group: 20,
        physfn: { address: '0000:03:00.0', index: 0 },
      }),
      pci({
        address: '0000:03:02.1',
        ids: '8086:154c',
        class: '020000',
        driver: 'iavf',
        group: 21,
        physfn: { address: '0000:03:00.0', index: 1 },
      }),
      pci({
        address: '0000:00:1f.6',
        ids: '8086:15bc',
        class: '020000',
        driver: 'e1000e',
        group: 16,
        netdevs: ['eno1'],
      }),
    ],
    usb: [
      usb('3-2', '046d:c24f', null, ['Logitech', 'G29 Driving Force Racing Wheel']),
      usb('3-3', '0781:5581', 'AAA111'),
      usb('3-4.1', '0781:5581', 'BBB222'),
    ],
    protected: [
      ['0000:02:00.0', 'root-disk'],
      ['0000:00:1f.6', 'default-route'],
      ['0000:00:02.0', 'boot-vga'],
    ],
  });
}
