import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hexId } from '../../src/model/ids.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { DomainXml } from '../../src/xml/domain-xml.js';
import type { DesiredHostdev, RewriteOptions } from '../../src/xml/rewrite.js';

// fixtures/domains/<case>.in.xml + <case>.desired.json → <case>.out.xml (or <case>.error.txt when
// that file exists: the case is expected to fail) and <case>.actions.txt.

export const DOMAINS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/domains');

interface DesiredJson {
  /** Rename adopted entries' own `ua-` aliases (apply does after asking). */
  renameUserAliases?: boolean;
  desired: Array<{
    alias: string;
    kind: 'pci' | 'usb' | 'sriov';
    address?: string;
    vendor?: string;
    product?: string;
    bus?: number;
    device?: number;
    mac?: string;
    vlan?: number;
  }>;
  /** Tagged aliases the caller wants kept although not desired (managedEntries → false). */
  keep?: string[];
}

export interface DomainCase {
  name: string;
  input: string;
  desired: DesiredHostdev[];
  options: RewriteOptions;
  path: (suffix: string) => string;
  expectsError: boolean;
}

export function domainCases(): DomainCase[] {
  return readdirSync(DOMAINS_DIR)
    .filter((f) => f.endsWith('.in.xml'))
    .sort()
    .map((f) => loadCase(f.slice(0, -'.in.xml'.length)));
}

export function loadCase(name: string): DomainCase {
  const path = (suffix: string) => join(DOMAINS_DIR, `${name}${suffix}`);
  const json: DesiredJson = existsSync(path('.desired.json'))
    ? JSON.parse(readFileSync(path('.desired.json'), 'utf8'))
    : { desired: [] };
  const keep = new Set(json.keep ?? []);
  return {
    name,
    input: readFileSync(path('.in.xml'), 'utf8'),
    desired: json.desired.map(toDesired),
    options: {
      managedEntries: (alias) => !keep.has(alias),
      ...(json.renameUserAliases ? { renameUserAliases: true } : {}),
    },
    path,
    expectsError: existsSync(path('.error.txt')),
  };
}

function toDesired(d: DesiredJson['desired'][number]): DesiredHostdev {
  switch (d.kind) {
    case 'pci':
      return { alias: d.alias, kind: 'pci', address: PciAddress.parse(d.address!) };
    case 'usb':
      return {
        alias: d.alias,
        kind: 'usb',
        vendor: hexId(d.vendor!),
        product: hexId(d.product!),
        ...(d.bus === undefined ? {} : { bus: d.bus }),
        ...(d.device === undefined ? {} : { device: d.device }),
      };
    case 'sriov':
      return {
        alias: d.alias,
        kind: 'sriov',
        address: PciAddress.parse(d.address!),
        ...(d.mac === undefined ? {} : { mac: d.mac }),
        ...(d.vlan === undefined ? {} : { vlan: d.vlan }),
      };
  }
}

/** Problems with `xml` as a realisation of `desired`: each desired alias once, on the desired source. */
export function mismatches(xml: string, desired: readonly DesiredHostdev[]): string[] {
  const entries = DomainXml.parse(xml).hostdevs();
  const problems: string[] = [];
  for (const d of desired) {
    const found = entries.filter((e) => e.alias === d.alias);
    if (found.length !== 1) {
      problems.push(`${d.alias}: ${found.length} entries`);
      continue;
    }
    const e = found[0]!;
    const ok =
      e.kind === d.kind &&
      (d.kind === 'usb'
        ? e.usb?.vendor === d.vendor &&
          e.usb?.product === d.product &&
          e.usb?.bus === (d.bus ?? null) &&
          e.usb?.device === (d.device ?? null)
        : d.address.equals(e.pciAddress) &&
          (d.kind === 'pci' ||
            ((d.mac === undefined || e.mac?.toLowerCase() === d.mac) && e.vlan === (d.vlan ?? null))));
    if (!ok) problems.push(`${d.alias}: ${JSON.stringify(e)}`);
  }
  return problems;
}
