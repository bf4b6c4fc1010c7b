import type { Config, DeviceEntry, DomainConfig } from './model.js';

// Rules that look across entries, after each entry is valid on its own.

/** Names must be unique per domain: they become XML aliases. Checked on every entry, valid or not. */
export function duplicateNames(domain: string, names: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return names.flatMap((name, i) => {
    const first = seen.get(name);
    if (first === undefined) {
      seen.set(name, i);
      return [];
    }
    return [
      `domains.${domain}.devices[${i}].name: "${name}" is already used by devices[${first}]: names must be unique per domain`,
    ];
  });
}

/** Rules across one domain's entries, once each is valid on its own. */
export function entryRules(domain: DomainConfig): string[] {
  const errors: string[] = [];
  domain.devices.forEach((entry, i) => {
    if (entry.type === 'sriov' && entry.count !== 1)
      errors.push(
        `domains.${domain.name}.devices[${i}].count: an sriov entry gives one VF; add another entry for a second VF`,
      );
  });
  return errors;
}

/**
 * Devices claimed by several domains: only one of them can run at a time. A warning about other
 * domains, so only `check` (which looks at all of them) shows it.
 */
export function claimConflicts(config: Config): string[] {
  const warnings: string[] = [];
  const claims = new Map<string, string[]>();
  for (const [domain, d] of config.domains) {
    for (const entry of d.devices) {
      for (const key of claimKeys(entry)) {
        const owners = claims.get(key) ?? [];
        owners.push(`${domain}/${entry.name}`);
        claims.set(key, owners);
      }
    }
  }
  for (const [key, owners] of claims) {
    const domains = new Set(owners.map((o) => o.split('/')[0]));
    if (domains.size > 1) {
      warnings.push(
        `${key} is claimed by ${owners.join(' and ')}: only one of these domains can run at a time`,
      );
    }
  }
  return warnings;
}

/** Entries that name the same device the same way, as comparable keys. */
function claimKeys(entry: DeviceEntry): string[] {
  switch (entry.type) {
    case 'pci':
      return entry.tiers.flatMap((t) =>
        t.address ? [`PCI ${t.address}`] : t.vendor && t.device ? [`PCI ${t.vendor}:${t.device}`] : [],
      );
    case 'usb':
      return entry.tiers.flatMap((t) =>
        t.serial
          ? [`USB serial ${t.serial}`]
          : t.port
            ? [`USB port ${t.port}`]
            : t.vendor && t.product && !t.serial
              ? [`USB ${t.vendor}:${t.product}`]
              : [],
      );
    case 'sriov':
      return entry.tiers.flatMap((t) => (t.vf !== undefined ? [`VF ${t.vf} of ${t.pf}`] : []));
  }
}
