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

/** Problems outside any domain: the libvirt URI and the paths root writes. */
export function topLevelProblems(config: Config): string[] {
  return [...uriProblems(config.libvirtUri), ...pathProblems(config)];
}

/** Folders the hook (root) may write its state and log into: system folders only root can change. */
export const ALLOWED_STATE_DIRS = ['/var/lib/qemu-hook', '/run/qemu-hook'] as const;
export const ALLOWED_LOG_DIRS = ['/var/log/libvirt', '/var/log/qemu-hook'] as const;

/** Query parameters of a local libvirt URI; everything else (command=, netcat=, proxy=…) is refused. */
const LOCAL_URI_PARAMS = new Set(['socket', 'mode', 'name']);

/**
 * The hook, as root, opens this URI (and the redefine helper it starts does too): only local,
 * non-executing transports. `qemu+ext://…?command=` would run a program; a remote host or an ssh
 * transport would hand our device operations (and credentials) to another machine.
 */
export function uriProblems(uri: string): string[] {
  const where = 'libvirt.uri';
  const m = /^([a-z][a-z0-9]*)(?:\+([a-z0-9]+))?:\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(uri);
  if (!m) return [`${where}: "${uri}" is not a libvirt URI: write e.g. "qemu:///system"`];
  const [, , transport, host, , query] = m;
  if (transport && transport.toLowerCase() !== 'unix')
    return [
      `${where}: transport "${transport}" is not allowed: the hook runs as root and uses only the local socket; write "qemu:///system" (or qemu+unix:///system)`,
    ];
  if (host) return [`${where}: a remote host ("${host}") is not allowed: write "qemu:///system"`];
  for (const pair of (query ?? '').split('&').filter(Boolean)) {
    const key = decodeURIComponent(pair.split('=')[0]!).toLowerCase();
    if (!LOCAL_URI_PARAMS.has(key))
      return [
        `${where}: parameter "${key}" is not allowed (only ${[...LOCAL_URI_PARAMS].join(', ')}): remove it`,
      ];
  }
  return [];
}

function pathProblems(config: Config): string[] {
  return [
    ...allowedPath('stateFile', config.stateFile, ALLOWED_STATE_DIRS),
    ...allowedPath('log.file', config.log.file, ALLOWED_LOG_DIRS),
  ];
}

/** Absolute, no `.`/`..` steps, and inside one of `dirs` (root writes there). */
function allowedPath(where: string, path: string, dirs: readonly string[]): string[] {
  const parts = path.split('/');
  const clean = path.startsWith('/') && !parts.some((p) => p === '.' || p === '..') && !path.endsWith('/');
  if (clean && dirs.some((d) => path.startsWith(`${d}/`))) return [];
  return [
    `${where}: "${path}" must be an absolute file path under ${dirs.join(' or ')} (root writes it; elsewhere it could be made to overwrite any file)`,
  ];
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
