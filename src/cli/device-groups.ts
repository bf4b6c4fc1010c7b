import type { Config } from '../config/model.js';
import { resolvePci } from '../match/pci.js';
import { deviceName, type Inventory, isVfio, type PciDevice } from '../model/device.js';
import { isBridgeClass } from '../model/ids.js';

// The IOMMU-group view people build with a shell loop over /sys/kernel/iommu_groups, plus what only
// qemu-hook knows: which configured VM claims each device and whether the group can go to a VM.

export interface Claim {
  readonly domain: string;
  /** The config entry; `(group)` for a member taken along by `iommuGroup: detach`. */
  readonly entry: string;
}

export interface GroupMember {
  readonly device: PciDevice;
  readonly bridge: boolean;
  readonly claims: readonly Claim[];
  /** The domain the state file says holds it now, if any. */
  readonly heldBy: string | null;
}

export interface IommuGroup {
  readonly group: number;
  readonly members: readonly GroupMember[];
  /**
   * VFIO takes a group whole: usable when every non-bridge member is on vfio-pci or on no driver
   * already, or when one VM claims every non-bridge member (the hook then detaches them all).
   */
  readonly usable: boolean;
  /** The VM that claims the whole group, when one does. */
  readonly claimedBy: string | null;
  /** Why, in words. */
  readonly verdict: string;
}

export function iommuGroups(
  inventory: Inventory,
  config: Config | null,
  held: readonly { domain: string; address: string }[],
): { groups: IommuGroup[]; ungrouped: PciDevice[] } {
  const claims = claimsOf(inventory, config);
  const byGroup = new Map<number, PciDevice[]>();
  const ungrouped: PciDevice[] = [];
  for (const d of inventory.pci) {
    if (d.iommuGroup === null) ungrouped.push(d);
    else byGroup.set(d.iommuGroup, [...(byGroup.get(d.iommuGroup) ?? []), d]);
  }
  const groups: IommuGroup[] = [];
  for (const [group, devices] of [...byGroup].sort((a, b) => a[0] - b[0])) {
    // `iommuGroup: detach`: a VM claiming one member takes the rest of the group along.
    const takesGroup = new Set(
      devices
        .flatMap((d) => claims.get(d.address.toString()) ?? [])
        .filter((c) => config?.domains.get(c.domain)?.iommuGroup === 'detach')
        .map((c) => c.domain),
    );
    const members = devices.map((device): GroupMember => {
      const address = device.address.toString();
      const bridge = isBridgeClass(device.classCode);
      const own = claims.get(address) ?? [];
      const along = bridge
        ? []
        : [...takesGroup]
            .filter((v) => !own.some((c) => c.domain === v))
            .map((domain) => ({ domain, entry: '(group)' }));
      return {
        device,
        bridge,
        claims: [...own, ...along],
        heldBy: held.find((h) => h.address === address)?.domain ?? null,
      };
    });
    groups.push({ group, members, ...verdictOf(group, members) });
  }
  return { groups, ungrouped };
}

function verdictOf(
  group: number,
  members: readonly GroupMember[],
): { usable: boolean; claimedBy: string | null; verdict: string } {
  const endpoints = members.filter((m) => !m.bridge);
  if (endpoints.length === 0)
    return { usable: false, claimedBy: null, verdict: 'bridges only: nothing to pass through' };
  const domains = new Set(endpoints.flatMap((m) => m.claims.map((c) => c.domain)));
  const whole =
    [...domains].find((v) => endpoints.every((m) => m.claims.some((c) => c.domain === v))) ?? null;
  if (whole) return { usable: true, claimedBy: whole, verdict: `usable: ${whole} claims every member` };
  const onHost = endpoints.filter((m) => m.device.driver !== null && !isVfio(m.device.driver));
  if (onHost.length === 0)
    return { usable: true, claimedBy: null, verdict: 'usable: every member is on vfio-pci or on no driver' };
  const label = (ms: readonly GroupMember[]) =>
    ms.map((m) => `${m.device.address} (${m.device.driver})`).join(', ');
  if (domains.size === 0)
    return {
      usable: false,
      claimedBy: null,
      verdict: `not usable yet: ${label(onHost)} on host drivers; one VM must claim every member`,
    };
  const unclaimed = onHost.filter((m) => m.claims.length === 0);
  const who = [...domains].join(', ');
  if (unclaimed.length === 0)
    return {
      usable: false,
      claimedBy: null,
      verdict: `not usable: no one VM claims every member (${who} each claim part)`,
    };
  return {
    usable: false,
    claimedBy: null,
    verdict: `not usable: ${who} ${domains.size === 1 ? 'claims' : 'claim'} only part of group ${group}; ${label(unclaimed)} ${unclaimed.length === 1 ? 'stays' : 'stay'} on the host`,
  };
}

/** address → the configured entries whose criteria pick it now. */
function claimsOf(inventory: Inventory, config: Config | null): Map<string, Claim[]> {
  const out = new Map<string, Claim[]>();
  if (!config) return out;
  for (const [domain, dc] of config.domains) {
    for (const entry of dc.devices) {
      if (entry.type !== 'pci') continue;
      const r = resolvePci(entry, inventory);
      if (!r.ok) continue;
      for (const d of r.devices) {
        const a = d.address.toString();
        out.set(a, [...(out.get(a) ?? []), { domain, entry: entry.name }]);
      }
    }
  }
  return out;
}

export function memberName(m: GroupMember, inventory: Inventory): string {
  const host = inventory.protectedDevices
    .filter((p) => p.address.equals(m.device.address))
    .map((p) => p.reason);
  return [deviceName(m.device), host.length > 0 ? `[host: ${host.join(',')}]` : ''].filter(Boolean).join(' ');
}
