import type { DeviceEntry, DomainConfig } from '../config/model.js';
import { resolvePci } from '../match/pci.js';
import type { Resolution } from '../match/resolution.js';
import { resolveSriov } from '../match/sriov.js';
import { resolveUsb, usbTwins } from '../match/usb.js';
import {
  deviceLabel,
  deviceName,
  type Inventory,
  isVfio,
  type PciDevice,
  type UsbDevice,
} from '../model/device.js';
import { isBridgeClass } from '../model/ids.js';
import { PciAddress } from '../model/pci-address.js';
import type { DefinitionChange, Plan, PlannedDevice } from '../model/plan.js';
import type { StateRecord } from '../state/schema.js';
import { unifiedDiff } from '../xml/diff.js';
import { aliasFor, DomainXml, type HostdevEntry } from '../xml/domain-xml.js';
import { type DesiredHostdev, rewriteHostdevs } from '../xml/rewrite.js';
import { usbCapacity } from '../xml/usb-ports.js';
import { currentRecords, staleWarning } from './held.js';
import { iommuProblem } from './host-support.js';
import { protectionOf } from './safety.js';

/** The definition a start would use: its XML (text or parsed) and where it came from. */
export interface StartDefinition {
  readonly xml: DomainXml | string;
  readonly source: string;
}

export interface PrepareInput {
  readonly domain: string;
  readonly config: DomainConfig;
  readonly inventory: Inventory;
  /**
   * The definition to check: the stdin XML in hook mode, the persistent one for `--simulate`,
   * `check` and `apply`, a proposed rewrite before it is written. `missing` when the domain is not
   * defined (a start is impossible); null when it was not looked for.
   */
  readonly definition: StartDefinition | { readonly missing: true; readonly source: string } | null;
  readonly records: readonly StateRecord[];
  /** Rename an adopted entry's own alias (`ua-myGPU`) to ours; only `apply`, after asking. */
  readonly renameUserAliases?: boolean;
}

/** A reason the start is refused, and the device it is about (null: the domain as a whole). */
interface Refusal {
  readonly device: string | null;
  readonly text: string;
  /** A fix that helps only when nothing else refuses the device ("; run qemu-hook apply"). */
  readonly hint?: string;
}

class Refusals {
  readonly list: Refusal[] = [];
  /** Device-only reasons that repeat a domain-wide refusal (shown on the device, not listed again). */
  readonly marks: Refusal[] = [];
  add(device: string | null, text: string, hint?: string): void {
    this.list.push({ device, text, ...(hint ? { hint } : {}) });
  }
  /** The texts, each hint kept only where it is the fix that applies. */
  texts(): string[] {
    return this.list.map((r) =>
      r.hint && !this.list.some((o) => o !== r && o.device === r.device && !o.hint)
        ? r.text + r.hint
        : r.text,
    );
  }
  mark(device: string, text: string): void {
    this.marks.push({ device, text });
  }
}

/** A resolved device with what the definition should say about it. */
export interface Resolved {
  readonly entry: DeviceEntry;
  readonly planned: PlannedDevice;
  readonly desired: DesiredHostdev;
  readonly pci: PciDevice | null;
}

/**
 * What a start of `domain` would do: the one planner behind the hook's `prepare`, `--simulate`,
 * `check`, `apply` (before it writes) and the redefine helper. Pure: reads nothing, writes nothing.
 */
export function planStart(input: PrepareInput): Plan {
  const { config, inventory } = input;
  const refusals = new Refusals();
  const warnings: string[] = [];
  const { current, stale } = currentRecords(input.records, inventory.bootId);
  warnings.push(...stale.map(staleWarning));
  const definition = parsedDefinition(input.definition);
  const hostdevs = definition ? definition.xml.hostdevs() : [];

  const all = resolveAll(input, current, hostdevs);
  const { resolved } = all;
  for (const u of all.unresolved) refusals.add(u.entry.name, u.reason);
  warnings.push(...all.duplicates);

  // Without an IOMMU no PCI device can go to a VM (libvirt: "host doesn't support passthrough").
  const noIommu = iommuProblem(inventory.support);
  if (noIommu && resolved.some((r) => r.pci)) {
    refusals.add(null, noIommu);
    for (const r of resolved) if (r.pci) refusals.mark(r.planned.name, 'this host has no active IOMMU');
  }

  // Devices held by another domain in this boot cannot be given to this one.
  for (const r of resolved) {
    const held = r.planned.address
      ? current.find((h) => h.address === r.planned.address && h.domain !== input.domain)
      : undefined;
    if (held)
      refusals.add(
        r.planned.name,
        `${r.planned.name}: ${r.planned.address} is held by domain ${held.domain} (detached for it and not yet given back); stop ${held.domain} first`,
      );
  }

  const siblings = groupSiblings(resolved, inventory, config, refusals);
  checkSafety(resolved, siblings, hostdevs, inventory, refusals, config.handover !== null);
  const planned = [...resolved.map((r) => r.planned), ...siblings];
  checkUsbBehindTakenControllers(planned, inventory, refusals);
  const definitionChange =
    input.definition && 'missing' in input.definition
      ? missingDefinition(input, refusals)
      : checkDefinition(input, definition, all, hostdevs, refusals);
  checkUsbCapacity(definition, definitionChange, resolved, refusals);

  const devices = [
    ...planned.map((d) => refusedIfNamed(d, refusals)),
    ...all.unresolved.map((u) => unresolvedDevice(u)),
  ];
  return {
    domain: input.domain,
    event: 'prepare',
    ok: refusals.list.length === 0,
    devices,
    definition: definitionChange,
    errors: refusals.texts(),
    warnings,
  };
}

/** The plan of a domain whose own config entry is invalid: refused, naming each problem. */
export function planRefusedByConfig(domain: string, problems: readonly string[]): Plan {
  return {
    domain,
    event: 'prepare',
    ok: false,
    devices: [],
    definition: { changed: false, diff: '' },
    errors: problems.map((p) => `the config is invalid: ${p}; run qemu-hook check`),
    warnings: [],
  };
}

function parsedDefinition(d: PrepareInput['definition']): { xml: DomainXml; source: string } | null {
  if (!d || 'missing' in d) return null;
  return { xml: typeof d.xml === 'string' ? DomainXml.parseFrom(d.xml, d.source) : d.xml, source: d.source };
}

/** A device a refusal names is not taken: its action says so, with the reason. */
function refusedIfNamed(d: PlannedDevice, refusals: Refusals): PlannedDevice {
  const mine = [...refusals.list, ...refusals.marks].filter((r) => r.device === d.name);
  if (mine.length === 0) return d;
  const reason = mine.map((r) => r.text.replace(new RegExp(`^${escapeRe(d.name)}: `), '')).join('; ');
  return { ...d, action: 'refuse', reason };
}

function unresolvedDevice(u: Unresolved): PlannedDevice {
  return {
    name: u.entry.name,
    type: u.entry.type,
    address: null,
    driver: null,
    action: 'refuse',
    iommuGroup: null,
    reason: u.reason.replace(new RegExp(`^${escapeRe(u.entry.name)}: `), ''),
    ...(u.candidates ? { candidates: u.candidates } : {}),
  };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function missingDefinition(input: PrepareInput, refusals: Refusals): DefinitionChange {
  const source = input.definition && 'missing' in input.definition ? input.definition.source : '';
  refusals.add(
    null,
    `${input.domain} is not defined (${source}): define the VM first (virsh define), then run qemu-hook apply --vm ${input.domain}`,
  );
  return { changed: false, diff: '', missing: true, ...(source ? { source } : {}) };
}

/**
 * libvirt refuses a definition with USB devices when USB is disabled or every port is taken:
 * check the definition a start would use (after the rewrite, when there is one).
 */
function checkUsbCapacity(
  definition: { xml: DomainXml } | null,
  change: DefinitionChange,
  resolved: readonly Resolved[],
  refusals: Refusals,
): void {
  const usb = resolved.filter((r) => r.desired.kind === 'usb');
  if (!definition || usb.length === 0) return;
  const result = change.xml ? DomainXml.parse(change.xml) : definition.xml;
  const cap = usbCapacity(result);
  const names = usb.map((r) => r.planned.name);
  if (cap.disabled) {
    for (const n of names)
      refusals.add(
        n,
        `${n}: the definition disables USB (<controller type='usb' model='none'/>), so libvirt cannot add a USB device: replace that controller with <controller type='usb' model='qemu-xhci'/> (virsh edit)`,
      );
  } else if (cap.free !== null && cap.free < 0) {
    for (const n of names.slice(names.length + cap.free))
      refusals.add(
        n,
        `${n}: the definition has no free USB port for it (${-cap.free} too few): add <controller type='usb' model='qemu-xhci' ports='15'/> (virsh edit), or remove a USB device`,
      );
  }
}

export interface Unresolved {
  readonly entry: DeviceEntry;
  readonly reason: string;
  readonly candidates?: readonly string[];
}

export interface ResolvedAll {
  readonly resolved: Resolved[];
  readonly unresolved: Unresolved[];
  /** Entries whose every device another entry already plans: left out, and what to drop. */
  readonly dropped: readonly DeviceEntry[];
  /** One line per address two entries of the domain plan: which entry to drop. */
  readonly duplicates: readonly string[];
}

/**
 * Every configured entry against the host. An address two entries plan (`functions: all` and a
 * separate entry for the audio function) is planned once, by the `functions: all` entry (or the
 * first), and the other entry is named for removal.
 */
export function resolveAll(
  input: PrepareInput,
  current: readonly StateRecord[],
  hostdevs: readonly HostdevEntry[],
): ResolvedAll {
  const items: Resolved[] = [];
  const unresolved: Unresolved[] = [];
  for (const entry of input.config.devices) {
    const r = resolveEntry(entry, input, current, hostdevs);
    if (r.ok) items.push(...r.items);
    else unresolved.push({ entry, reason: r.reason, ...(r.candidates ? { candidates: r.candidates } : {}) });
  }
  const wins = (a: Resolved, b: Resolved) =>
    (a.entry.type === 'pci' && a.entry.functions === 'all') >=
    (b.entry.type === 'pci' && b.entry.functions === 'all');
  const keep = new Map<string, Resolved>();
  for (const r of items) {
    const at = r.planned.address;
    if (!at) continue;
    const have = keep.get(at);
    if (!have || (!wins(have, r) && have.entry !== r.entry)) keep.set(at, r);
  }
  const duplicates: string[] = [];
  const resolved = items.filter((r) => {
    const at = r.planned.address;
    const winner = at ? keep.get(at) : r;
    if (winner === r) return true;
    if (winner && winner.entry !== r.entry) {
      const all = winner.entry.type === 'pci' && winner.entry.functions === 'all';
      duplicates.push(
        `${r.entry.name}: ${at} is also planned by ${winner.entry.name}${all ? " (functions: all takes the slot's other functions)" : ''}; it is planned once: drop the ${r.entry.name} entry`,
      );
    }
    return false;
  });
  const dropped = input.config.devices.filter(
    (e) => items.some((r) => r.entry === e) && !resolved.some((r) => r.entry === e),
  );
  return { resolved, unresolved, dropped, duplicates };
}

function resolveEntry(
  entry: DeviceEntry,
  input: PrepareInput,
  current: readonly StateRecord[],
  hostdevs: readonly HostdevEntry[],
): { ok: true; items: Resolved[] } | { ok: false; reason: string; candidates?: readonly string[] } {
  const { inventory } = input;
  switch (entry.type) {
    case 'pci': {
      const r = resolvePci(entry, inventory);
      return r.ok ? { ok: true, items: r.devices.map((d, i) => pciItem(entry, d, i, r, current)) } : r;
    }
    case 'sriov': {
      const r = resolveSriov(entry, inventory, {
        isTaken: (vf) => {
          const held = current.find((h) => h.address === vf.address.toString() && h.domain !== input.domain);
          return held ? `domain ${held.domain}` : null;
        },
        // On vfio-pci with no record of ours: perhaps another VM's (libvirt-managed). Choose it last.
        isBusy: (vf) => isVfio(vf.driver) && !hostdevs.some((h) => h.pciAddress?.equals(vf.address)),
        preferred: hostdevs.filter((h) => h.kind === 'sriov' && h.pciAddress).map((h) => h.pciAddress!),
      });
      if (!r.ok) return r;
      const vf = r.devices[0]!;
      const item = pciItem(entry, vf, 0, r, current);
      return {
        ok: true,
        items: [
          {
            ...item,
            planned: { ...item.planned, type: 'sriov' },
            desired: {
              alias: aliasFor(entry.name, 0),
              kind: 'sriov',
              address: vf.address,
              ...(entry.mac ? { mac: entry.mac } : {}),
              ...(entry.vlan ? { vlan: entry.vlan } : {}),
            },
          },
        ],
      };
    }
    case 'usb': {
      const r = resolveUsb(entry, inventory);
      return r.ok ? { ok: true, items: r.devices.map((d, i) => usbItem(entry, d, i, r, inventory)) } : r;
    }
  }
}

function pciItem(
  entry: DeviceEntry,
  d: PciDevice,
  index: number,
  r: Resolution<unknown> & { ok: true },
  current: readonly StateRecord[],
): Resolved {
  const mine = current.find((h) => h.address === d.address.toString());
  return {
    entry,
    pci: d,
    planned: {
      name: index === 0 ? entry.name : `${entry.name}-${index}`,
      type: 'pci',
      address: d.address.toString(),
      driver: d.driver,
      action: isVfio(d.driver) ? 'none' : 'detach',
      iommuGroup: d.iommuGroup,
      // A record left by an earlier start of this boot already knows the real original driver.
      originalDriver: mine ? mine.originalDriver : isVfio(d.driver) ? null : d.driver,
      matchedBy: r.criteria,
      ...(index >= entry.count ? { reason: `function of ${entry.name}` } : {}),
    },
    desired: { alias: aliasFor(entry.name, index), kind: 'pci', address: d.address },
  };
}

function usbItem(
  entry: DeviceEntry,
  d: UsbDevice,
  index: number,
  r: Resolution<unknown> & { ok: true },
  inventory: Inventory,
): Resolved {
  // libvirt refuses a vendor/product pair that several devices share: name the bus/device then.
  const twins = usbTwins(d, inventory).length > 0;
  return {
    entry,
    pci: null,
    planned: {
      name: index === 0 ? entry.name : `${entry.name}-${index}`,
      type: 'usb',
      address: null,
      driver: null,
      action: 'none',
      iommuGroup: null,
      usb: { vendor: d.vendor, product: d.product, port: d.port, serial: d.serial },
      matchedBy: r.criteria,
    },
    desired: {
      alias: aliasFor(entry.name, index),
      kind: 'usb',
      vendor: d.vendor,
      product: d.product,
      ...(twins ? { bus: d.busnum, device: d.devnum } : {}),
    },
  };
}

/** The IOMMU-group policy: other non-bridge members of a group bound to a host driver. */
function groupSiblings(
  resolved: readonly Resolved[],
  inventory: Inventory,
  config: DomainConfig,
  refusals: Refusals,
): PlannedDevice[] {
  if (config.iommuGroup === 'ignore') return [];
  const inPlan = new Set(resolved.map((r) => r.planned.address));
  const added: PlannedDevice[] = [];
  for (const r of resolved) {
    const d = r.pci;
    if (!d || d.iommuGroup === null) continue;
    const others = inventory.pci.filter(
      (o) =>
        o.iommuGroup === d.iommuGroup &&
        !inPlan.has(o.address.toString()) &&
        !isBridgeClass(o.classCode) &&
        o.driver !== null &&
        !isVfio(o.driver),
    );
    for (const o of others) {
      inPlan.add(o.address.toString());
      if (config.iommuGroup === 'require') {
        // A function of the same card is what `functions: all` is for; anything else is the board's grouping.
        const sameSlot = o.address.slotKey === d.address.slotKey && r.entry.type === 'pci';
        refusals.add(
          r.planned.name,
          sameSlot
            ? `${r.planned.name}: IOMMU group ${d.iommuGroup} also holds ${deviceLabel(o)} on driver ${o.driver}, another function of the same card; VFIO needs the whole group: set functions: all on the ${r.entry.name} entry`
            : `${r.planned.name}: IOMMU group ${d.iommuGroup} also holds ${deviceLabel(o)} on driver ${o.driver}; VFIO needs the whole group: add it to the config, set iommuGroup: detach, or move the card to another slot`,
        );
      } else {
        added.push({
          name: `${r.entry.name}-group-${added.filter((a) => a.name.startsWith(`${r.entry.name}-group-`)).length + 1}`,
          type: 'pci',
          address: o.address.toString(),
          driver: o.driver,
          action: 'detach',
          iommuGroup: o.iommuGroup,
          originalDriver: o.driver,
          reason: `IOMMU group ${d.iommuGroup} member, with ${r.planned.name}`,
        });
      }
    }
  }
  return added;
}

/** Never the root disk's controller, the default route's NIC, or the console's boot VGA. */
function checkSafety(
  resolved: readonly Resolved[],
  siblings: readonly PlannedDevice[],
  hostdevs: readonly HostdevEntry[],
  inventory: Inventory,
  refusals: Refusals,
  handover: boolean,
): void {
  const seen = new Set<string>();
  const guard = (who: string, address: PciAddress, force: boolean, device: string | null) => {
    const key = address.toString();
    if (seen.has(key)) return;
    seen.add(key);
    const why = protectionOf(inventory, address, force);
    if (why)
      refusals.add(device, `${who}: refusing to give ${describeAt(inventory, address)} to the VM: ${why}`);
  };
  // A domain with `handover` takes the console's GPU from the desktop itself (plan/handover.ts).
  for (const r of resolved)
    if (r.pci) guard(r.planned.name, r.pci.address, r.entry.force || handover, r.planned.name);
  for (const s of siblings) guard(s.name, PciAddress.parse(s.address!), false, s.name);
  for (const h of hostdevs)
    if (h.pciAddress) guard(h.alias ? `definition's ${h.alias}` : 'definition', h.pciAddress, false, null);
}

/**
 * A USB device whose host controller goes to the VM leaves the host with the controller: libvirt
 * would not find it to pass it on, and the VM has it already, through the controller.
 */
function checkUsbBehindTakenControllers(
  devices: readonly PlannedDevice[],
  inventory: Inventory,
  refusals: Refusals,
): void {
  const taken = new Map<string, string>();
  for (const p of devices) if (p.address) taken.set(p.address, p.name);
  for (const planned of devices) {
    if (!planned.usb) continue;
    const port = planned.usb.port;
    const controller = inventory.usb.find((u) => u.port === port)?.controller?.toString();
    const by = controller ? taken.get(controller) : undefined;
    if (by)
      refusals.add(
        planned.name,
        `${planned.name}: ${planned.usb.vendor}:${planned.usb.product} at USB port ${port} is behind ${by} (${controller}), which the VM takes whole, so it reaches the VM through that controller: remove the ${planned.name} entry, or plug the device into a port of another controller`,
      );
  }
}

/** Tagged entries that moved, configured devices missing from the definition, the diff to fix it. */
function checkDefinition(
  input: PrepareInput,
  definition: { xml: DomainXml; source: string } | null,
  all: ResolvedAll,
  hostdevs: readonly HostdevEntry[],
  refusals: Refusals,
): DefinitionChange & { stale: boolean } {
  const { inventory, config } = input;
  const { resolved } = all;
  if (!definition) return { changed: false, diff: '', stale: false };
  let stale = false;
  const configured = new Set(config.devices.map((e) => e.name));
  for (const r of resolved) {
    const tagged = hostdevs.find((h) => h.alias === r.desired.alias);
    if (tagged) {
      const was = sourceText(tagged);
      const now = desiredText(r.desired);
      if (was !== now && !(r.desired.kind === 'usb' && usbStillMatches(tagged, r.desired))) {
        stale = true;
        const holder = tagged.pciAddress
          ? inventory.pci.find((d) => d.address.equals(tagged.pciAddress))
          : undefined;
        const there = tagged.pciAddress
          ? holder
            ? `; ${was} now holds ${deviceName(holder)}`
            : `; nothing is at ${was} now`
          : '';
        refusals.add(
          r.planned.name,
          `${r.planned.name} moved ${was} → ${now}: the definition is stale${there}`,
        );
      }
      continue;
    }
    const adoptable = hostdevs.some(
      (h) =>
        !h.alias?.startsWith('ua-qemuhook-') &&
        sourceText(h) === desiredText(r.desired) &&
        h.kind === r.desired.kind,
    );
    if (!adoptable) {
      stale = true;
      // apply cannot help a device that is refused for another reason: the hint goes then.
      refusals.add(
        r.planned.name,
        `${r.planned.name}: the definition has no entry for ${desiredText(r.desired)}`,
        '; run qemu-hook apply',
      );
    }
  }
  for (const h of hostdevs) {
    if (h.ourName && !configured.has(h.ourName.entry)) {
      stale = true;
      refusals.add(
        null,
        `the definition still has ${h.alias} (${sourceText(h)}), which is no longer in the config; run qemu-hook apply`,
      );
    }
  }
  const desired = resolved.map((r) => r.desired);
  // An entry that failed to resolve keeps whatever the definition has for it.
  // An entry left out as a duplicate is handled: its old entries go.
  const unresolved = all.unresolved.map((u) => u.entry.name);
  const rewrite = rewriteHostdevs(definition.xml, desired, {
    managedEntries: (alias) =>
      !unresolved.some((n) => alias === aliasFor(n, 0) || alias.startsWith(`${aliasFor(n, 0)}-`)),
    renameUserAliases: input.renameUserAliases ?? false,
  });
  return {
    changed: rewrite.changed,
    ...(rewrite.changed ? { actions: rewrite.actions } : {}),
    diff: rewrite.changed ? unifiedDiff(definition.xml.text(), rewrite.xml, `${input.domain}.xml`) : '',
    ...(rewrite.changed ? { xml: rewrite.xml } : {}),
    source: definition.source,
    stale,
  };
}

function sourceText(h: HostdevEntry): string {
  if (h.pciAddress) return h.pciAddress.toString();
  if (h.usb)
    return `usb ${h.usb.vendor ?? '?'}:${h.usb.product ?? '?'}${h.usb.bus !== null ? ` bus ${h.usb.bus} device ${h.usb.device}` : ''}`;
  return '(no source)';
}

function desiredText(d: DesiredHostdev): string {
  if (d.kind === 'usb')
    return `usb ${d.vendor}:${d.product}${d.bus !== undefined ? ` bus ${d.bus} device ${d.device}` : ''}`;
  return d.address.toString();
}

/** libvirt finds a USB device by vendor/product itself; only the ids (and a pinned bus/device) matter. */
function usbStillMatches(h: HostdevEntry, d: DesiredHostdev & { kind: 'usb' }): boolean {
  return (
    h.usb?.vendor === d.vendor &&
    h.usb?.product === d.product &&
    (h.usb.bus === null || d.bus === undefined || (h.usb.bus === d.bus && h.usb.device === d.device))
  );
}

function describeAt(inventory: Inventory, address: PciAddress): string {
  const d = inventory.pci.find((p) => p.address.equals(address));
  return d ? deviceLabel(d) : address.toString();
}
