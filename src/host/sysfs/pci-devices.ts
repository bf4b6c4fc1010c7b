import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PciDevice } from '../../model/device.js';
import { type HexId, type PciClassCode, parseHexId, parsePciClass } from '../../model/ids.js';
import { PciAddress } from '../../model/pci-address.js';
import type { PciNames } from '../pci-ids.js';
import { errnoCode, linkName, listDir, readlinkOrNull, readSmall, type Warnings } from './sysfs-files.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Every PCI function under `<sys>/bus/pci/devices`, sorted by address. */
export function readPciDevices(sys: string, names: PciNames, warnings: Warnings): PciDevice[] {
  const base = join(sys, 'bus/pci/devices');
  const entries = listDir(base);
  if (!entries) {
    warnings.add(`no PCI devices: cannot read ${base}`);
    return [];
  }
  const devices: Mutable<PciDevice>[] = [];
  const netdevs = netdevsByFunction(sys);
  const vfOwners = new Map<string, { address: PciAddress; index: number }>();
  const driverThere = driverExistence(sys);
  for (const name of entries) {
    const d = readOne(`${base}/${name}`, name, { names, netdevs, vfOwners, driverThere }, warnings);
    if (d) devices.push(d);
  }
  devices.sort((a, b) => a.address.compare(b.address));
  // A VF learns its PF from the PF's virtfnN links, read anyway: no physfn probe on every function
  // (a VF whose PF is not listed is on its way out with it, and reads as a plain function).
  for (const d of devices) d.physfn = vfOwners.get(d.address.toString()) ?? null;
  return devices;
}

/** What the read of one device shares with the others. */
interface Shared {
  readonly names: PciNames;
  readonly netdevs: Map<string, string[]> | null;
  readonly vfOwners: Map<string, { address: PciAddress; index: number }>;
  readonly driverThere: (dir: string, link: string, driver: string) => boolean;
}

/**
 * Whether a device's driver link leads to a driver, asked once per driver rather than once per
 * device (300 stats on a 300-function host, for a dozen drivers): a link of the kernel's own form
 * (…/bus/pci/drivers/<name>) is there when `<sys>/bus/pci/drivers/<name>` is; any other link is
 * followed itself.
 */
function driverExistence(sys: string): Shared['driverThere'] {
  const known = new Map<string, boolean>();
  return (dir, link, driver) => {
    if (!link.endsWith(`/bus/pci/drivers/${driver}`)) return existsSync(`${dir}/driver`);
    let there = known.get(driver);
    if (there === undefined) {
      there = existsSync(`${sys}/bus/pci/drivers/${driver}`);
      known.set(driver, there);
    }
    return there;
  };
}

function readOne(dir: string, name: string, shared: Shared, warnings: Warnings): Mutable<PciDevice> | null {
  const { names, netdevs, vfOwners } = shared;
  const address = PciAddress.tryParse(name);
  if (!address) {
    warnings.add(`PCI device ${name}: not a PCI address; skipped`);
    return null;
  }
  // No readdir of the device folder: on a 300-function host it was the largest single cost of a
  // start. sriov_totalvfs, which most devices lack, is probed with a non-throwing existence check
  // first: a failed open costs a thrown error, several times the syscall itself.
  let vanished = false;
  const attr = (file: string, required: boolean): string | null => {
    try {
      return readSmall(`${dir}/${file}`);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        if (!existsSync(dir)) vanished = true;
        else if (required) warnings.add(`PCI device ${name}: ${file} is missing`);
        return null;
      }
      warnings.unreadable(`PCI device ${name}`, `${dir}/${file}`, err, dir);
      return null;
    }
  };
  const hex = (file: string, required: boolean): HexId | null => {
    const text = attr(file, required);
    if (text === null) return null;
    const id = parseHexId(text);
    if (!id) warnings.add(`PCI device ${name}: unexpected ${file} "${text}"`);
    return id;
  };

  // modalias carries vendor, device, subsystem ids and class in one read (half the syscalls of
  // reading five attributes); the separate attributes are the fallback.
  const ids = parseModalias(attr('modalias', false)) ?? {
    vendor: hex('vendor', true),
    device: hex('device', true),
    subsystemVendor: hex('subsystem_vendor', true),
    subsystemDevice: hex('subsystem_device', true),
    classCode: classAttr(attr('class', true), name, warnings),
  };
  if (vanished) {
    warnings.add(`PCI device ${name} disappeared while it was being read; skipped`);
    return null;
  }
  const { vendor, device, classCode } = ids;
  if (!vendor || !device || !classCode) {
    warnings.add(`PCI device ${name}: skipped (ids or class unreadable)`);
    return null;
  }

  const driverLink = readlinkOrNull(`${dir}/driver`);
  const driver = driverLink === null ? null : driverLink.slice(driverLink.lastIndexOf('/') + 1);
  // A driver link that leads nowhere (a driver being unloaded this instant, or a damaged capture)
  // names no driver a give-back could bind: such a device is not one we can take and return.
  if (driverLink !== null && driver !== null && !shared.driverThere(dir, driverLink, driver)) {
    warnings.add(`PCI device ${name}: its driver link names ${driver}, which is not there; skipped`);
    return null;
  }
  // driver_override decides what binds next; it matters for a device with no driver or on vfio-pci
  // (a detach that did not finish). Skipping it for the others saves three syscalls a device.
  const override = driver === null || driver === 'vfio-pci' ? attr('driver_override', false) : null;
  const groupName = linkName(`${dir}/iommu_group`);
  const group = groupName === null ? null : Number(groupName);

  let sriov: PciDevice['sriov'] = null;
  const totalVfs = existsSync(`${dir}/sriov_totalvfs`) ? attr('sriov_totalvfs', false) : null;
  if (totalVfs !== null) {
    const vfLinks = (listDir(dir) ?? [])
      .filter((f) => /^virtfn\d+$/.test(f))
      .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
    const vfs: PciAddress[] = [];
    for (const link of vfLinks) {
      const vf = PciAddress.tryParse(linkName(`${dir}/${link}`) ?? '');
      if (vf) {
        vfs.push(vf);
        vfOwners.set(vf.toString(), { address, index: Number(link.slice(6)) });
      } else warnings.add(`PCI device ${name}: cannot follow ${link}`);
    }
    sriov = { totalVfs: toInt(totalVfs), numVfs: toInt(attr('sriov_numvfs', false)), vfs };
  }

  return {
    kind: 'pci',
    address,
    vendor,
    device,
    subsystemVendor: ids.subsystemVendor,
    subsystemDevice: ids.subsystemDevice,
    classCode,
    driver,
    driverOverride: override === null || override === '(null)' || override === '' ? null : override,
    iommuGroup: group !== null && Number.isInteger(group) ? group : null,
    // Only display controllers have boot_vga.
    bootVga: classCode.startsWith('03') && attr('boot_vga', false) === '1',
    vendorName: names.vendorName(vendor),
    deviceName: names.deviceName(vendor, device),
    netdevs: netdevs ? (netdevs.get(name) ?? []) : (listDir(`${dir}/net`) ?? []).sort(),
    sriov,
    physfn: null, // set by readPciDevices once every PF is read
  };
}

/**
 * Network interfaces by the PCI function that provides them, from one pass over class/net
 * instead of one readdir per device. An interface counts when it sits right under the function
 * (`<fn>/net/<if>`) or under its virtio device (`<fn>/virtio0/net/<if>`); a USB NIC behind an
 * xHCI controller is not the controller's. null when class/net cannot be read.
 */
function netdevsByFunction(sys: string): Map<string, string[]> | null {
  const classNet = `${sys}/class/net`;
  const ifaces = listDir(classNet);
  if (!ifaces) return null;
  const out = new Map<string, string[]>();
  for (const iface of ifaces.sort()) {
    const target = readlinkOrNull(`${classNet}/${iface}`);
    const m = target && NET_UNDER_PCI.exec(target);
    if (!m) continue;
    const list = out.get(m[1]!);
    if (list) list.push(iface);
    else out.set(m[1]!, [iface]);
  }
  return out;
}

const NET_UNDER_PCI = /\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\/(?:virtio\d+\/)?net\/[^/]+$/;

interface Ids {
  readonly vendor: HexId | null;
  readonly device: HexId | null;
  readonly subsystemVendor: HexId | null;
  readonly subsystemDevice: HexId | null;
  readonly classCode: PciClassCode | null;
}

// pci:v000010DEd00002204sv00001458sd0000403Bbc03sc00i00, as drivers/pci/pci-sysfs.c prints it.
const MODALIAS =
  /^pci:v0000([0-9A-F]{4})d0000([0-9A-F]{4})sv0000([0-9A-F]{4})sd0000([0-9A-F]{4})bc([0-9A-F]{2})sc([0-9A-F]{2})i([0-9A-F]{2})$/i;

function parseModalias(text: string | null): Ids | null {
  const m = text === null ? null : MODALIAS.exec(text.trim());
  if (!m) return null;
  return {
    vendor: parseHexId(m[1]!),
    device: parseHexId(m[2]!),
    subsystemVendor: parseHexId(m[3]!),
    subsystemDevice: parseHexId(m[4]!),
    classCode: parsePciClass(`${m[5]}${m[6]}${m[7]}`),
  };
}

function classAttr(text: string | null, name: string, warnings: Warnings): PciClassCode | null {
  if (text === null) return null;
  const code = parsePciClass(text);
  if (!code) warnings.add(`PCI device ${name}: unexpected class "${text}"`);
  return code;
}

function toInt(text: string | null): number {
  const n = text === null ? Number.NaN : Number.parseInt(text, 10);
  return Number.isFinite(n) ? n : 0;
}
