import type * as z from 'zod/mini';
import { parseHexId, parseMac, parsePciClassPrefix } from '../model/ids.js';
import { PciAddress, PciAddressPattern } from '../model/pci-address.js';
import type {
  Config,
  ConfigResult,
  DeviceEntry,
  DomainConfig,
  PciCriteria,
  SriovCriteria,
  UsbCriteria,
} from './model.js';
import { checkRules, duplicateNames } from './rules.js';
import {
  configSchema,
  HEX_TEXT_KEYS,
  type RawDeviceEntry,
  type RawPciCriteria,
  type RawSriovCriteria,
  type RawUsbCriteria,
} from './schema.js';
import { readYaml } from './yaml.js';

type Path = readonly (string | number)[];

/** Parse and validate config text. Never throws for bad input: problems are data. */
export function parseConfig(text: string): ConfigResult {
  const yaml = readYaml(text, HEX_TEXT_KEYS);
  if (!yaml.ok) return { config: null, warnings: [], errors: [`YAML: ${yaml.error}`] };
  const raw = yaml.value ?? {};

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    return { config: null, warnings: [], errors: parsed.error.issues.map((i) => describeIssue(i, raw)) };
  }

  const errors: string[] = [];
  const domains = new Map<string, DomainConfig>();
  for (const [name, d] of Object.entries(parsed.data.domains)) {
    const devices = d.devices.map((e, i) => normalizeEntry(e, ['domains', name, 'devices', i], errors));
    errors.push(
      ...duplicateNames(
        name,
        d.devices.map((e) => e.name),
      ),
    );
    domains.set(name, {
      name,
      devices: devices.filter((e): e is DeviceEntry => e !== null),
      iommuGroup: d.iommuGroup,
      onAddressChange: d.onAddressChange,
    });
  }
  const config: Config = {
    domains,
    libvirtUri: parsed.data.libvirt.uri,
    stateFile: parsed.data.stateFile,
    log: parsed.data.log,
  };
  const rules = checkRules(config);
  errors.push(...rules.errors);
  return { config: errors.length === 0 ? config : null, warnings: rules.warnings, errors };
}

export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const where = formatPath(issue.path as Path);
  const last = issue.path[issue.path.length - 1];
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove or correct ${issue.keys.length > 1 ? 'them' : 'it'} (see the config reference in the README)`;
  }
  if (issue.code === 'invalid_union' && last === 'match') {
    return `${where}: not a valid criteria set for this device type (check the key names and that hex ids are quoted strings)`;
  }
  if (issue.code === 'invalid_union' && issue.path[issue.path.length - 2] === 'devices') {
    return `${where}: a device needs "name", "match" and a "type" of pci (default), usb or sriov`;
  }
  if (issue.code === 'invalid_type') {
    return `${where}: ${issue.message}${quotingHint(issue.expected, valueAt(raw, issue.path as Path))}`;
  }
  return `${where}: ${issue.message}`;
}

/** YAML decides by the quotes whether `2`, `true` or `0000` is text: say which way to write it. */
function quotingHint(expected: string, value: unknown): string {
  if (expected === 'boolean' && typeof value === 'string') return ': write true or false, without quotes';
  if (
    (expected === 'number' || expected === 'int') &&
    typeof value === 'string' &&
    /^-?\d+$/.test(value.trim())
  )
    return ': write it without quotes';
  if (expected === 'string' && (typeof value === 'number' || typeof value === 'boolean'))
    return ': put it in quotes';
  return '';
}

function valueAt(raw: unknown, path: Path): unknown {
  let v = raw;
  for (const p of path)
    v = v !== null && typeof v === 'object' ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

function normalizeEntry(e: RawDeviceEntry, path: Path, errors: string[]): DeviceEntry | null {
  const before = errors.length;
  const tiers = Array.isArray(e.match) ? e.match : [e.match];
  const tierPath = (i: number) => (Array.isArray(e.match) ? [...path, 'match', i] : [...path, 'match']);
  const base = { name: e.name, count: e.count, force: e.force };
  let entry: DeviceEntry;
  switch (e.type) {
    case 'pci':
      entry = {
        ...base,
        type: 'pci',
        functions: e.functions,
        tiers: (tiers as RawPciCriteria[]).map((t, i) => pciCriteria(t, tierPath(i), errors)),
      };
      break;
    case 'usb':
      entry = {
        ...base,
        type: 'usb',
        tiers: (tiers as RawUsbCriteria[]).map((t, i) => usbCriteria(t, tierPath(i), errors)),
      };
      break;
    case 'sriov': {
      const mac = e.mac === undefined ? undefined : parseMac(e.mac);
      if (mac === null)
        errors.push(
          `${formatPath([...path, 'mac'])}: "${e.mac}" is not a MAC address (e.g. 52:54:00:12:34:56)`,
        );
      entry = {
        ...base,
        type: 'sriov',
        tiers: (tiers as RawSriovCriteria[]).map((t, i) => sriovCriteria(t, tierPath(i), errors)),
        ...(mac ? { mac } : {}),
        ...(e.vlan !== undefined ? { vlan: e.vlan } : {}),
      };
      break;
    }
  }
  return errors.length === before ? entry : null;
}

function pciCriteria(t: RawPciCriteria, path: Path, errors: string[]): PciCriteria {
  const at = (k: string) => formatPath([...path, k]);
  const out: { -readonly [K in keyof PciCriteria]: PciCriteria[K] } = { text: criteriaText(t) };
  if (Object.keys(t).length === 0)
    errors.push(
      `${formatPath(path)}: empty criteria set: it would match every device; add vendor/device, address, class or name`,
    );
  if (t.address !== undefined) {
    const a = PciAddressPattern.tryParse(t.address);
    if (a) out.address = a;
    else
      errors.push(
        `${at('address')}: "${t.address}" is not a PCI address: write "0000:01:00.0" (or "0000:01:00.*")`,
      );
  }
  for (const k of ['vendor', 'device', 'subsystemVendor', 'subsystemDevice'] as const) {
    if (t[k] === undefined) continue;
    const id = parseHexId(t[k]);
    if (id) out[k] = id;
    else errors.push(`${at(k)}: "${t[k]}" is not a 16-bit hex id: write it quoted, e.g. "10de"`);
  }
  if (t.class !== undefined) {
    const c = parsePciClassPrefix(t.class);
    if (c) out.class = c;
    else
      errors.push(
        `${at('class')}: "${t.class}" is not a PCI class: write 2, 4 or 6 hex digits, quoted, e.g. "0300"`,
      );
  }
  if (t.name !== undefined) {
    const re = compileRegex(t.name, at('name'), errors);
    if (re) out.name = re;
  }
  if (t.driver !== undefined) out.driver = t.driver;
  return out;
}

function usbCriteria(t: RawUsbCriteria, path: Path, errors: string[]): UsbCriteria {
  const at = (k: string) => formatPath([...path, k]);
  const out: { -readonly [K in keyof UsbCriteria]: UsbCriteria[K] } = { text: criteriaText(t) };
  if (Object.keys(t).length === 0)
    errors.push(`${formatPath(path)}: empty criteria set: add vendor/product, serial, port or name`);
  for (const k of ['vendor', 'product'] as const) {
    if (t[k] === undefined) continue;
    const id = parseHexId(t[k]);
    if (id) out[k] = id;
    else errors.push(`${at(k)}: "${t[k]}" is not a 16-bit hex id: write it quoted, e.g. "046d"`);
  }
  if (t.serial !== undefined) out.serial = t.serial;
  if (t.port !== undefined) {
    if (/^\d+-\d+(\.\d+)*$/.test(t.port)) out.port = t.port;
    else
      errors.push(
        `${at('port')}: "${t.port}" is not a USB port path: write it as in /sys/bus/usb/devices, e.g. "3-2.1"`,
      );
  }
  if (t.name !== undefined) {
    const re = compileRegex(t.name, at('name'), errors);
    if (re) out.name = re;
  }
  return out;
}

function sriovCriteria(t: RawSriovCriteria, path: Path, errors: string[]): SriovCriteria {
  if (/^[0-9a-f]{0,4}:?[0-9a-f]{1,2}:[0-9a-f]{1,2}\.\d$/i.test(t.pf) && !PciAddress.tryParse(t.pf)) {
    errors.push(`${formatPath([...path, 'pf'])}: "${t.pf}" looks like a PCI address but is not one`);
  }
  return { pf: t.pf, ...(t.vf !== undefined ? { vf: t.vf } : {}), text: criteriaText(t) };
}

function compileRegex(source: string, where: string, errors: string[]): RegExp | null {
  try {
    return new RegExp(source, 'i');
  } catch (err) {
    errors.push(`${where}: not a valid regular expression (${(err as Error).message})`);
    return null;
  }
}

function criteriaText(t: object): string {
  return `{ ${Object.entries(t)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`)
    .join(', ')} }`;
}
