import type { SriovEntry } from '../config/model.js';
import type { Inventory, PciDevice } from '../model/device.js';
import { PciAddress } from '../model/pci-address.js';
import type { PciResolution } from './resolution.js';

export interface VfChoice {
  /** Who holds this VF (another domain's state record of this boot), or null. */
  isTaken(vf: PciDevice): string | null;
  /** A VF that looks in use without a record of ours (bound to vfio-pci elsewhere): chosen last. */
  isBusy(vf: PciDevice): boolean;
  /** VF addresses this domain's definition already uses: keep them so the guest sees no change. */
  preferred: readonly PciAddress[];
}

/** The PF named by netdev or address, then a fixed VF index or the first free VF. */
export function resolveSriov(entry: SriovEntry, inventory: Inventory, choice: VfChoice): PciResolution {
  const problems: string[] = [];
  for (const [i, t] of entry.tiers.entries()) {
    const pfAddress = PciAddress.tryParse(t.pf);
    const pf = inventory.pci.find((d) =>
      pfAddress ? d.address.equals(pfAddress) : d.netdevs.includes(t.pf),
    );
    if (!pf) {
      problems.push(`no PF ${t.pf}`);
      continue;
    }
    if (!pf.sriov) return fail(entry, `${pf.address} (${t.pf}) is not an SR-IOV physical function`);
    const vfs = pf.sriov.vfs
      .map((a) => inventory.pci.find((d) => d.address.equals(a)))
      .filter((d): d is PciDevice => d !== undefined);
    if (vfs.length === 0) {
      return fail(
        entry,
        `${t.pf} has no VFs enabled (sriov_numvfs is ${pf.sriov.numVfs}); enable them, e.g. echo 4 > .../sriov_numvfs`,
      );
    }
    const criteria = t.text;
    if (t.vf !== undefined) {
      const vf = vfs.find((d) => d.physfn?.index === t.vf);
      if (!vf) return fail(entry, `${t.pf} has no VF ${t.vf} (it has ${vfs.length})`);
      const taken = choice.isTaken(vf);
      if (taken) return fail(entry, `VF ${t.vf} of ${t.pf} (${vf.address}) is in use by ${taken}`);
      return { ok: true, devices: [vf], tier: i, criteria };
    }
    const free = vfs.filter((d) => !choice.isTaken(d));
    const kept = free.find((d) => choice.preferred.some((p) => p.equals(d.address)));
    const pick = kept ?? free.find((d) => !choice.isBusy(d)) ?? free[0];
    if (!pick)
      return fail(
        entry,
        `every VF of ${t.pf} is in use (${vfs.map((d) => `${d.address}: ${choice.isTaken(d)}`).join(', ')})`,
      );
    return { ok: true, devices: [pick], tier: i, criteria };
  }
  return fail(entry, `${problems.join('; ')}: run \`qemu-hook devices\` to see the SR-IOV PFs`);
}

function fail(entry: SriovEntry, why: string): PciResolution {
  return { ok: false, reason: `${entry.name}: ${why}` };
}
