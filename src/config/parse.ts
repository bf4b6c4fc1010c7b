import type * as z from 'zod/mini';
import { NEVER_STOPPED, NEVER_UNLOADED } from '../model/handover.js';
import { parseHexId, parseMac, parsePciClassPrefix } from '../model/ids.js';
import { INSTALLED_README } from '../model/paths.js';
import { PciAddress, PciAddressPattern } from '../model/pci-address.js';
import type {
  Config,
  ConfigResult,
  DeviceEntry,
  DomainConfig,
  HandoverConfig,
  PciCriteria,
  SriovCriteria,
  UsbCriteria,
} from './model.js';
import { unsafePattern } from './regex-safety.js';
import { duplicateNames, entryRules, topLevelProblems } from './rules.js';
import {
  domainSchema,
  HEX_TEXT_KEYS,
  KNOWN_KEYS,
  type RawDeviceEntry,
  type RawHandover,
  type RawPciCriteria,
  type RawSriovCriteria,
  type RawUsbCriteria,
  topLevelSchema,
} from './schema.js';
import { closest } from './suggest.js';
import { readYaml } from './yaml.js';

type Path = readonly (string | number)[];

export interface ParseOptions {
  /** This host's name: `hosts:` sections whose key matches it replace shared domains of the same name. */
  readonly host?: string | null;
}

/**
 * Parse and validate config text. Never throws for bad input: problems are data. A problem inside
 * `domains.<name>` makes only that domain invalid (`config.invalidDomains`); a problem outside any
 * domain makes the whole config invalid (`config: null`).
 */
export function parseConfig(text: string, options: ParseOptions = {}): ConfigResult {
  const yaml = readYaml(text, HEX_TEXT_KEYS);
  if (!yaml.ok) return { config: null, warnings: [], errors: [`YAML: ${yaml.error}`], domainNames: null };
  const raw = yaml.value ?? {};
  const domainNames = namedDomains(raw);

  const top = topLevelSchema.safeParse(raw);
  if (!top.success) {
    return {
      config: null,
      warnings: [],
      errors: top.error.issues.flatMap((i) => describeIssue(i, raw).split('\n')),
      domainNames,
    };
  }
  const domains = new Map<string, DomainConfig>();
  const invalidDomains = new Map<string, readonly string[]>();
  for (const [name, rawDomain] of Object.entries(top.data.domains)) {
    const r = parseDomain(name, rawDomain ?? {}, raw);
    if (r.ok) domains.set(name, r.domain);
    else invalidDomains.set(name, r.errors);
  }
  // Every host section is checked on every host (one file serves them all); a section's problems
  // refuse its domains only on the hosts it applies to, and are warnings elsewhere.
  const host = options.host ?? null;
  const warnings: string[] = [];
  const sections = Object.entries(top.data.hosts).map(([pattern, section]) => ({
    pattern,
    parsed: Object.entries(section.domains).map(([name, rawDomain]) => ({
      name,
      r: parseDomain(name, rawDomain ?? {}, raw, ['hosts', pattern, 'domains', name]),
    })),
  }));
  const hostSections: string[] = [];
  // Globs first, in file order, then the host's own name: the most specific section wins.
  for (const exact of [false, true]) {
    for (const s of sections) {
      if (isGlob(s.pattern) === exact) continue;
      if (host === null || !hostMatches(s.pattern, host)) {
        for (const { r } of s.parsed) if (!r.ok) warnings.push(...r.errors);
        continue;
      }
      hostSections.push(s.pattern);
      for (const { name, r } of s.parsed) {
        domains.delete(name);
        invalidDomains.delete(name);
        if (r.ok) domains.set(name, r.domain);
        else invalidDomains.set(name, r.errors);
      }
    }
  }
  const config: Config = {
    domains,
    invalidDomains,
    host,
    hostSections,
    libvirtUri: top.data.libvirt.uri,
    stateFile: top.data.stateFile,
    log: top.data.log,
    limits: top.data.limits,
  };
  // Values that would make root run or write anything are the whole config's problem.
  const errors = topLevelProblems(config);
  if (errors.length > 0) return { config: null, warnings: [], errors, domainNames };
  return { config, warnings, errors: [], domainNames };
}

const isGlob = (pattern: string) => /[*?]/.test(pattern);

/** A `hosts:` key against a hostname: `*` any run of characters, `?` one; case does not matter. */
export function hostMatches(pattern: string, host: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replaceAll('*', '.*')
    .replaceAll('?', '.');
  return new RegExp(`^${re}$`, 'i').test(host);
}

/** Every problem of one domain's entry, each with its path. */
export function configProblems(result: ConfigResult): string[] {
  return [...result.errors, ...[...(result.config?.invalidDomains.values() ?? [])].flat()];
}

function parseDomain(
  name: string,
  rawDomain: unknown,
  raw: unknown,
  at: Path = ['domains', name],
): { ok: true; domain: DomainConfig } | { ok: false; errors: string[] } {
  // Unknown keys of a device entry first: a misspelt `type` would make every other key look wrong.
  const entryKeys = unknownEntryKeys(rawDomain, at);
  const parsed = domainSchema.safeParse(rawDomain);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => ({ ...i, path: [...at, ...i.path] }) as z.core.$ZodIssue)
      .filter((i) => !entryKeys.entries.some((p) => startsWith(i.path as Path, p)));
    return {
      ok: false,
      errors: [...entryKeys.errors, ...issues.flatMap((i) => describeIssue(i, raw).split('\n'))],
    };
  }
  const errors: string[] = [...entryKeys.errors];
  const d = parsed.data;
  const devices = d.devices.map((e, i) => normalizeEntry(e, [...at, 'devices', i], errors));
  errors.push(
    ...duplicateNames(
      name,
      d.devices.map((e) => e.name),
    ).map((m) => m.replace(`domains.${name}`, formatPath(at))),
  );
  const domain: DomainConfig = {
    name,
    devices: devices.filter((e): e is DeviceEntry => e !== null),
    iommuGroup: d.iommuGroup,
    onAddressChange: d.onAddressChange,
    handover: normalizeHandover(d.handover, [...at, 'handover'], errors),
  };
  errors.push(...entryRules(domain).map((m) => m.replace(`domains.${name}`, formatPath(at))));
  return errors.length === 0 ? { ok: true, domain } : { ok: false, errors };
}

const ALL_ENTRY_KEYS = [...new Set(Object.values(KNOWN_KEYS.entry).flat())];

/** Keys no device entry takes, with the closest valid one; the entries they make unreadable. */
function unknownEntryKeys(rawDomain: unknown, at: Path): { errors: string[]; entries: Path[] } {
  const devices = (rawDomain as { devices?: unknown } | null)?.devices;
  const errors: string[] = [];
  const entries: Path[] = [];
  if (!Array.isArray(devices)) return { errors, entries };
  devices.forEach((e, i) => {
    if (!e || typeof e !== 'object' || Array.isArray(e)) return;
    const unknown = Object.keys(e).filter((k) => !ALL_ENTRY_KEYS.includes(k));
    if (unknown.length === 0) return;
    const path = [...at, 'devices', i];
    entries.push(path);
    for (const k of unknown) {
      const hint = closest(k, ALL_ENTRY_KEYS);
      const decides =
        hint === 'type' ? ' (type decides which match keys the entry takes: pci, usb or sriov)' : '';
      errors.push(
        `${formatPath(path)}: unknown key "${k}"${hint ? `: did you mean "${hint}"?${decides}` : `: a device entry takes ${ALL_ENTRY_KEYS.join(', ')}`}`,
      );
    }
  });
  return { errors, entries };
}

function startsWith(path: Path, prefix: Path): boolean {
  return prefix.every((p, i) => path[i] === p);
}

/** The keys valid where an unknown key was found, from the schema and the entry's type. */
function knownKeysAt(path: Path, raw: unknown): readonly string[] {
  const [first, , third, , fifth] = path;
  if (path.length === 0) return KNOWN_KEYS.top;
  if (path.length === 1 && first === 'libvirt') return KNOWN_KEYS.libvirt;
  if (path.length === 1 && first === 'log') return KNOWN_KEYS.log;
  if (first !== 'domains') return [];
  if (path.length === 2) return KNOWN_KEYS.domain;
  if (third !== 'devices') return [];
  const type = (valueAt(raw, path.slice(0, 4)) as { type?: unknown } | null)?.type ?? 'pci';
  const t = (['pci', 'usb', 'sriov'] as const).find((x) => x === type) ?? 'pci';
  if (path.length === 4) return KNOWN_KEYS.entry[t];
  if (fifth === 'match') return KNOWN_KEYS.criteria[t];
  return [];
}

/** The keys under `domains` as written, so an invalid config still says which domains it names. */
function namedDomains(raw: unknown): readonly string[] {
  const domains = (raw as { domains?: unknown } | null)?.domains;
  return domains !== null && typeof domains === 'object' && !Array.isArray(domains)
    ? Object.keys(domains)
    : [];
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
    const known = knownKeysAt(issue.path as Path, raw);
    return issue.keys
      .map((k) => {
        const hint = closest(k, known);
        return hint
          ? `${where}: unknown key "${k}": did you mean "${hint}"?`
          : `${where}: unknown key "${k}": remove or correct it (${known.length > 0 ? `valid here: ${known.join(', ')}; ` : ''}see the config reference in ${INSTALLED_README})`;
      })
      .join('\n');
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

function normalizeHandover(
  h: RawHandover | null | undefined,
  path: Path,
  errors: string[],
): HandoverConfig | null {
  if (h === undefined) return null;
  // `handover:` with nothing after it reads as null in YAML: the same as {}.
  const raw = h ?? { services: [], modules: [], timeout: 15, holders: 'refuse' as const };
  const services = raw.services.map((u) => (/\.[a-z]+$/.test(u) ? u : `${u}.service`));
  services.forEach((u, i) => {
    if (NEVER_STOPPED.has(u))
      errors.push(
        `${formatPath([...path, 'services', i])}: ${u} runs libvirt itself and is never stopped: remove it`,
      );
  });
  raw.modules.forEach((m, i) => {
    if (NEVER_UNLOADED.has(m.replaceAll('-', '_')))
      errors.push(
        `${formatPath([...path, 'modules', i])}: ${m} is shared by every GPU (or built in) and is never unloaded: remove it`,
      );
  });
  return {
    services,
    modules: raw.modules.map((m) => m.replaceAll('-', '_')),
    timeoutMs: Math.round(raw.timeout * 1000),
    holders: raw.holders,
  };
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
    const re = new RegExp(source, 'i');
    const unsafe = unsafePattern(source);
    if (unsafe) {
      errors.push(`${where}: ${unsafe}`);
      return null;
    }
    return re;
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
