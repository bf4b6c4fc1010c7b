import type { Config, DeviceEntry } from './model.js';

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

export function checkRules(config: Config): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const claims = new Map<string, string[]>();

  for (const [domain, d] of config.domains) {
    d.devices.forEach((entry, i) => {
      const where = `domains.${domain}.devices[${i}]`;
      if (entry.type === 'sriov' && entry.count !== 1) {
        errors.push(`${where}.count: an sriov entry gives one VF; add another entry for a second VF`);
      }
      for (const key of claimKeys(entry)) {
        const owners = claims.get(key) ?? [];
        owners.push(`${domain}/${entry.name}`);
        claims.set(key, owners);
      }
    });
  }
  for (const [key, owners] of claims) {
    const domains = new Set(owners.map((o) => o.split('/')[0]));
    if (domains.size > 1) {
      warnings.push(
        `${key} is claimed by ${owners.join(' and ')}: only one of these domains can run at a time`,
      );
    }
  }
  return { errors, warnings };
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
