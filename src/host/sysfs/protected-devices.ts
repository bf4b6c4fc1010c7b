import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { PciDevice, ProtectedDevice } from '../../model/device.js';
import { isVfio } from '../../model/device.js';
import { PciAddress } from '../../model/pci-address.js';
import { errnoCode, linkName, listDir, pciComponents, readSmall, type Warnings } from './sysfs-files.js';

// The devices the host cannot lose: the disk controller of `/` (and the bridges above it), the
// controllers of every other disk in use (a mounted filesystem, an active swap, a member of an md
// or device-mapper device), the NIC of the default route (and its bridges, and the PF of a VF),
// the boot VGA console.

export function protectedDevices(
  sys: string,
  proc: string,
  pci: readonly PciDevice[],
  warnings: Warnings,
): ProtectedDevice[] {
  const out = new Map<string, ProtectedDevice>();
  const add = (p: ProtectedDevice) => {
    const key = `${p.address} ${p.reason}`;
    if (!out.has(key)) out.set(key, p);
  };
  hostUseProtections(sys, proc, warnings).forEach(add);
  for (const d of pci) {
    if (d.bootVga && d.driver && !isVfio(d.driver)) {
      add({
        address: d.address,
        reason: 'boot-vga',
        detail: `boot VGA device driving the console (driver ${d.driver})`,
      });
    }
  }
  return [...out.values()].sort((a, b) => a.address.compare(b.address) || a.reason.localeCompare(b.reason));
}

/**
 * The devices the host uses through its disks and its default route. Reads mounts, swaps, block
 * chains and routes, never the whole PCI tree: release checks each recorded device against it.
 */
export function hostUseProtections(sys: string, proc: string, warnings: Warnings): ProtectedDevice[] {
  const root = rootDisk(sys, proc, warnings);
  const taken = new Set(root.map((p) => p.address.toString()));
  const disks: ProtectedDevice[] = [];
  for (const p of disksInUse(sys, proc, warnings)) {
    const key = p.address.toString();
    if (taken.has(key)) continue; // the root disk's own entry says more
    taken.add(key);
    disks.push(p);
  }
  return [...root, ...disks, ...defaultRoute(sys, proc, warnings)];
}

// --- root filesystem -------------------------------------------------------------------------

function readMounts(proc: string): { source: string; dir: string }[] {
  return readFileSync(join(proc, 'mounts'), 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length >= 2 && f[0] && f[1])
    .map((f) => ({ source: unescapeMount(f[0]!), dir: unescapeMount(f[1]!) }));
}

function rootDisk(sys: string, proc: string, warnings: Warnings): ProtectedDevice[] {
  const mountsPath = join(proc, 'mounts');
  let mounts: { source: string; dir: string }[];
  try {
    mounts = readMounts(proc);
  } catch (err) {
    warnings.add(`cannot find the root filesystem's disk: cannot read ${mountsPath} (${errnoCode(err)})`);
    return [];
  }
  // The last mount on "/" is the one in effect (an initramfs "rootfs" may come first).
  let source: string | null = null;
  for (const m of mounts) if (m.dir === '/') source = m.source;
  if (!source) {
    warnings.add(`cannot find the root filesystem's disk: no "/" in ${mountsPath}`);
    return [];
  }
  const block = blockDeviceName(sys, source);
  if (!block) {
    warnings.add(
      `cannot tell which disk holds the root filesystem (${source}); its controller is not protected, check it yourself`,
    );
    return [];
  }
  const chains = blockChains(sys, block, warnings, new Set());
  if (chains.length === 0) {
    warnings.add(`root filesystem ${source} (${block}) is not on a PCI device; nothing to protect`);
  }
  const via = source.endsWith(`/${block}`) ? source : `${source} = ${block}`;
  return chains.flatMap(({ addresses, leaf }) =>
    addresses.map((a, i) =>
      i === addresses.length - 1
        ? {
            address: a,
            reason: 'root-disk' as const,
            detail: `controller of the root filesystem's disk (${via}, ${leaf})`,
          }
        : {
            address: a,
            reason: 'root-disk' as const,
            detail: `bridge above the root filesystem's disk (${via})`,
          },
    ),
  );
}

// --- other disks in use -----------------------------------------------------------------------

/**
 * Controllers (and bridges) of every block device holding a mounted filesystem, an active swap
 * partition, or a member of an md/device-mapper device: detaching one would pull a disk from
 * under the host. Each is named by what uses it ("/srv/data on sdb1").
 */
function disksInUse(sys: string, proc: string, warnings: Warnings): ProtectedDevice[] {
  const uses: { block: string; what: string }[] = [];
  try {
    for (const m of readMounts(proc)) {
      if (m.dir === '/' || !m.source.startsWith('/dev/')) continue;
      const block = blockDeviceName(sys, m.source);
      if (block) uses.push({ block, what: m.dir });
      else
        warnings.add(
          `cannot tell which disk holds ${m.dir} (${m.source}); its controller is not protected, check it yourself`,
        );
    }
  } catch {
    // rootDisk already said the mounts cannot be read
  }
  try {
    for (const line of readFileSync(join(proc, 'swaps'), 'utf8').split('\n').slice(1)) {
      const [file, type] = line.trim().split(/\s+/);
      if (!file || type !== 'partition') continue; // a swap file sits on a mounted filesystem
      const block = blockDeviceName(sys, unescapeMount(file));
      if (block) uses.push({ block, what: 'swap' });
    }
  } catch {
    // no /proc/swaps: no swap
  }
  for (const entry of (listDir(join(sys, 'class/block')) ?? []).sort()) {
    if (!/^(md|dm-)/.test(entry)) continue;
    const name = entry.startsWith('dm-') ? readDmName(sys, entry) : null;
    for (const slave of (listDir(join(sys, 'class/block', entry, 'slaves')) ?? []).sort())
      uses.push({ block: slave, what: `member of ${name ? `${entry} (${name})` : entry}` });
  }
  const out: ProtectedDevice[] = [];
  for (const { block, what } of uses) {
    for (const { addresses, leaf } of blockChains(sys, block, warnings, new Set())) {
      const use = `${what} on ${leaf}`;
      addresses.forEach((a, i) => {
        const last = i === addresses.length - 1;
        out.push({
          address: a,
          reason: 'mounted-disk',
          detail: last
            ? `controller of a disk the host uses (${use})`
            : `bridge above a disk the host uses (${use})`,
        });
      });
    }
  }
  return out;
}

function readDmName(sys: string, entry: string): string | null {
  try {
    return readSmall(join(sys, 'class/block', entry, 'dm/name')) || null;
  } catch {
    return null;
  }
}

/** /dev/nvme0n1p2 → nvme0n1p2; /dev/mapper/vg0-root and /dev/vg0/root → dm-N; anything else → null. */
function blockDeviceName(sys: string, source: string): string | null {
  const m = /^\/dev\/(.+)$/.exec(source);
  if (!m) return null; // UUID=…, a ZFS dataset, a network filesystem
  const rel = m[1]!;
  const classBlock = join(sys, 'class/block');
  if (!rel.includes('/')) return rel === 'root' ? null : listDir(join(classBlock, rel)) ? rel : null;
  const [dir, name] = rel.split('/', 2) as [string, string];
  if (dir === 'disk') return null; // /dev/disk/by-uuid/…: a udev link, not resolvable from sysfs
  // LVM names its mapping "<vg>-<lv>" with dashes inside names doubled.
  const dmName = dir === 'mapper' ? name : `${dir.replaceAll('-', '--')}-${name.replaceAll('-', '--')}`;
  for (const entry of listDir(classBlock) ?? []) {
    if (!entry.startsWith('dm-')) continue;
    try {
      if (readSmall(join(classBlock, entry, 'dm/name')) === dmName) return entry;
    } catch {
      // a mapping without a name: not ours
    }
  }
  return null;
}

interface Chain {
  readonly addresses: PciAddress[];
  /** The physical block device at the end of the chain (a partition or disk). */
  readonly leaf: string;
}

/** PCI functions along the path of a block device; device-mapper and md devices through their slaves. */
function blockChains(sys: string, block: string, warnings: Warnings, seen: Set<string>): Chain[] {
  if (seen.has(block)) return [];
  seen.add(block);
  let real: string;
  try {
    real = realpathSync(join(sys, 'class/block', block));
  } catch (err) {
    warnings.add(`cannot follow block device ${block} (${errnoCode(err)})`);
    return [];
  }
  const addresses = toAddresses(pciComponents(real));
  if (addresses.length > 0) return [{ addresses, leaf: block }];
  return (listDir(join(real, 'slaves')) ?? [])
    .sort()
    .flatMap((slave) => blockChains(sys, slave, warnings, seen));
}

// --- default route ---------------------------------------------------------------------------

function defaultRoute(sys: string, proc: string, warnings: Warnings): ProtectedDevice[] {
  const ifaces = defaultRouteInterfaces(proc, warnings);
  const out: ProtectedDevice[] = [];
  for (const iface of ifaces) {
    for (const { addresses, via, physfn } of netChains(sys, iface, warnings, new Set())) {
      const name = via === iface ? iface : `${iface} via ${via}`;
      addresses.forEach((a, i) => {
        const last = i === addresses.length - 1;
        out.push({
          address: a,
          reason: 'default-route',
          detail: last
            ? `NIC of the default route (${name})`
            : `bridge above the default route's NIC (${name})`,
        });
      });
      if (physfn) {
        out.push({
          address: physfn,
          reason: 'default-route',
          detail: `physical function of the default route's VF (${name})`,
        });
      }
    }
  }
  return out;
}

function defaultRouteInterfaces(proc: string, warnings: Warnings): string[] {
  const ifaces = new Set<string>();
  const v4 = join(proc, 'net/route');
  try {
    for (const line of readFileSync(v4, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // Iface Destination Gateway Flags RefCnt Use Metric Mask …; flag 0x1 = RTF_UP
      if (
        f.length >= 8 &&
        f[1] === '00000000' &&
        f[7] === '00000000' &&
        (Number.parseInt(f[3]!, 16) & 1) === 1
      ) {
        ifaces.add(f[0]!);
      }
    }
  } catch (err) {
    warnings.add(`cannot find the default route: cannot read ${v4} (${errnoCode(err)})`);
  }
  try {
    // dest dest_len src src_len next_hop metric refcnt use flags iface; skip reject routes (0x200) and lo.
    for (const line of readFileSync(join(proc, 'net/ipv6_route'), 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !/^0{32}$/.test(f[0]!) || f[1] !== '00') continue;
      const flags = Number.parseInt(f[8]!, 16);
      if ((flags & 1) === 1 && (flags & 0x200) === 0 && f[9] !== 'lo') ifaces.add(f[9]!);
    }
  } catch {
    // no IPv6: nothing to add
  }
  return [...ifaces].sort();
}

interface NetChain {
  readonly addresses: PciAddress[];
  /** The interface backed by PCI (differs from the routed one for a bridge, bond or VLAN). */
  readonly via: string;
  /** The PF when `via` is an SR-IOV VF: detaching the PF would take the VF away. */
  readonly physfn: PciAddress | null;
}

/** PCI functions behind a network interface; bridges, bonds and VLANs through their lower_* links. */
function netChains(sys: string, iface: string, warnings: Warnings, seen: Set<string>): NetChain[] {
  if (seen.has(iface)) return [];
  seen.add(iface);
  let real: string;
  try {
    real = realpathSync(join(sys, 'class/net', iface));
  } catch (err) {
    warnings.add(`cannot follow network interface ${iface} of the default route (${errnoCode(err)})`);
    return [];
  }
  const addresses = toAddresses(pciComponents(real));
  if (addresses.length > 0) {
    const fn = addresses[addresses.length - 1]!;
    const pf = PciAddress.tryParse(linkName(join(sys, 'bus/pci/devices', fn.toString(), 'physfn')) ?? '');
    return [{ addresses, via: iface, physfn: pf }];
  }
  const lowers = (listDir(real) ?? []).filter((f) => f.startsWith('lower_')).sort();
  return lowers.flatMap((l) => netChains(sys, l.slice('lower_'.length), warnings, seen));
}

// --- helpers ---------------------------------------------------------------------------------

function toAddresses(names: string[]): PciAddress[] {
  return names.map((n) => PciAddress.tryParse(n)).filter((a): a is PciAddress => a !== null);
}

/** /proc/mounts escapes space, tab, newline and backslash as octal (\040). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}
