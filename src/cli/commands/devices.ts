import type { Inventory, PciDevice } from '../../model/device.js';
import { iommuProblem, pciIdsProblem } from '../../plan/host-support.js';
import type { CliContext } from '../context.js';
import { EXIT } from '../exit.js';
import { table } from '../table.js';
import { inventoryReader } from '../wiring.js';

/** `qemu-hook devices`: what the host has, as the matcher sees it. */
export async function devices(ctx: CliContext): Promise<number> {
  const inv = await inventoryReader(ctx).read();
  // What the host cannot do comes first: every GROUP cell reads "-" without an IOMMU.
  if (!ctx.args.json) for (const note of hostNotes(inv)) ctx.out(`host: ${note}`);
  if (ctx.args.groups) return (await import('./devices-groups.js')).devicesGroups(ctx, inv);
  if (ctx.args.json) {
    ctx.out(JSON.stringify(inventoryJson(inv), null, 2));
    return EXIT.ok;
  }
  const protectedBy = (d: PciDevice) =>
    inv.protectedDevices
      .filter((p) => p.address.equals(d.address))
      .map((p) => p.reason)
      .join(',');
  ctx.out('PCI');
  for (const line of table(
    ['ADDRESS', 'CLASS', 'IDS', 'SUBSYSTEM', 'DRIVER', 'GROUP', 'NAME'],
    inv.pci.map((d) => [
      d.address.toString(),
      d.classCode,
      `${d.vendor}:${d.device}`,
      d.subsystemVendor ? `${d.subsystemVendor}:${d.subsystemDevice}` : '-',
      d.driver ?? '-',
      d.iommuGroup === null ? '-' : String(d.iommuGroup),
      [
        [d.vendorName, d.deviceName].filter(Boolean).join(' ') || '',
        d.sriov
          ? `[PF ${d.sriov.numVfs}/${d.sriov.totalVfs} VFs${d.netdevs.length ? ` ${d.netdevs.join(',')}` : ''}]`
          : '',
        d.physfn ? `[VF ${d.physfn.index} of ${d.physfn.address}]` : '',
        protectedBy(d) ? `[host: ${protectedBy(d)}]` : '',
      ]
        .filter(Boolean)
        .join(' '),
    ]),
  ))
    ctx.out(line);
  ctx.out('USB');
  if (inv.usb.length === 0) ctx.out('  (none)');
  else
    for (const line of table(
      ['PORT', 'IDS', 'CONTROLLER', 'SERIAL', 'NAME'],
      inv.usb.map((u) => [
        u.port,
        `${u.vendor}:${u.product}`,
        u.controller?.toString() ?? '-',
        u.serial ?? '-',
        [u.manufacturer, u.productName].filter(Boolean).join(' '),
      ]),
    ))
      ctx.out(line);
  for (const w of inv.warnings) ctx.err(`warning: ${w}`);
  return EXIT.ok;
}

export function inventoryJson(inv: Inventory): object {
  return {
    pci: inv.pci.map((d) => ({
      ...d,
      address: d.address.toString(),
      sriov: d.sriov ? { ...d.sriov, vfs: d.sriov.vfs.map(String) } : null,
      physfn: d.physfn ? { index: d.physfn.index, address: d.physfn.address.toString() } : null,
    })),
    usb: inv.usb.map((u) => ({ ...u, controller: u.controller?.toString() ?? null })),
    protected: inv.protectedDevices.map((p) => ({ ...p, address: p.address.toString() })),
    bootId: inv.bootId,
    warnings: inv.warnings,
    host: hostNotes(inv),
  };
}

function hostNotes(inv: Inventory): string[] {
  return [iommuProblem(inv.support), pciIdsProblem(inv.support)].filter((n): n is string => n !== null);
}
