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
import { currentRecords, staleWarning } from './held.js';
import { protectionOf } from './safety.js';

export interface PrepareInput {
  readonly domain: string;
  readonly config: DomainConfig;
  readonly inventory: Inventory;
  /** The definition to check (stdin XML in hook mode, the persistent one for --simulate); null when unknown. */
  readonly definition: { readonly xml: DomainXml; readonly source: string } | null;
  readonly records: readonly StateRecord[];
}

/** A resolved device with what the definition should say about it. */
export interface Resolved {
  readonly entry: DeviceEntry;
  readonly planned: PlannedDevice;
  readonly desired: DesiredHostdev;
  readonly pci: PciDevice | null;
}

/** Plans a `prepare`: pure; reads nothing, writes nothing. */
export function planPrepare(input: PrepareInput): Plan {
  const { config, inventory, definition } = input;
  const errors: string[] = [];
  const warnings: string[] = [];
  const { current, stale } = currentRecords(input.records, inventory.bootId);
  warnings.push(...stale.map(staleWarning));
  const hostdevs = definition ? definition.xml.hostdevs() : [];

  const { resolved, errors: unresolved } = resolveAll(input, current, hostdevs);
  errors.push(...unresolved);

  // Devices held by another domain in this boot cannot be given to this one.
  for (const r of resolved) {
    const held = r.planned.address
      ? current.find((h) => h.address === r.planned.address && h.domain !== input.domain)
      : undefined;
    if (held)
      errors.push(
        `${r.planned.name}: ${r.planned.address} is held by domain ${held.domain} (detached for it and not yet given back); stop ${held.domain} first`,
      );
  }

  const siblings = groupSiblings(resolved, inventory, config, errors);
  checkSafety(resolved, siblings, hostdevs, inventory, errors);
  const devices = [...resolved.map((r) => r.planned), ...siblings];
  checkUsbBehindTakenControllers(devices, inventory, errors);
  const definitionChange = checkDefinition(input, resolved, hostdevs, errors);

  return {
    domain: input.domain,
    event: 'prepare',
    ok: errors.length === 0,
    devices,
    definition: definitionChange,
    errors,
    warnings,
  };
}

/**
 * The plan a start would make with the definition reading `xml`: the persistent one as found, or the
 * rewrite an earlier plan proposed (checked before anything writes it).
 */
export function planWithDefinition(
  input: Omit<PrepareInput, 'definition'>,
  xml: string,
  source: string,
): Plan {
  return planPrepare({ ...input, definition: { xml: DomainXml.parseFrom(xml, source), source } });
}

/** Every configured entry against the host; entries that do not resolve give one error each. */
export function resolveAll(
  input: PrepareInput,
  current: readonly StateRecord[],
  hostdevs: readonly HostdevEntry[],
): { resolved: Resolved[]; errors: string[] } {
  const resolved: Resolved[] = [];
  const errors: string[] = [];
  for (const entry of input.config.devices) {
    const r = resolveEntry(entry, input, current, hostdevs);
    if (r.ok) resolved.push(...r.items);
    else errors.push(r.reason);
  }
  return { resolved, errors };
}

function resolveEntry(
  entry: DeviceEntry,
  input: PrepareInput,
  current: readonly StateRecord[],
  hostdevs: readonly HostdevEntry[],
): { ok: true; items: Resolved[] } | { ok: false; reason: string } {
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
  errors: string[],
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
        errors.push(
          `${r.planned.name}: IOMMU group ${d.iommuGroup} also holds ${deviceLabel(o)} on driver ${o.driver}; VFIO needs the whole group: add it to the config, set iommuGroup: detach, or move the card to another slot`,
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
  errors: string[],
): void {
  const seen = new Set<string>();
  const guard = (who: string, address: PciAddress, force: boolean) => {
    const key = address.toString();
    if (seen.has(key)) return;
    seen.add(key);
    const why = protectionOf(inventory, address, force);
    if (why) errors.push(`${who}: refusing to give ${describeAt(inventory, address)} to the VM: ${why}`);
  };
  for (const r of resolved) if (r.pci) guard(r.planned.name, r.pci.address, r.entry.force);
  for (const s of siblings) guard(s.name, PciAddress.parse(s.address!), false);
  for (const h of hostdevs)
    if (h.pciAddress) guard(h.alias ? `definition's ${h.alias}` : 'definition', h.pciAddress, false);
}

/** Tagged entries that moved, configured devices missing from the definition, the diff to fix it. */
/**
 * A USB device whose host controller goes to the VM leaves the host with the controller: libvirt
 * would not find it to pass it on, and the VM has it already, through the controller.
 */
function checkUsbBehindTakenControllers(
  devices: readonly PlannedDevice[],
  inventory: Inventory,
  errors: string[],
): void {
  const taken = new Map<string, string>();
  for (const p of devices) if (p.address) taken.set(p.address, p.name);
  for (const planned of devices) {
    if (!planned.usb) continue;
    const port = planned.usb.port;
    const controller = inventory.usb.find((u) => u.port === port)?.controller?.toString();
    const by = controller ? taken.get(controller) : undefined;
    if (by)
      errors.push(
        `${planned.name}: ${planned.usb.vendor}:${planned.usb.product} at USB port ${port} is behind ${by} (${controller}), which the VM takes whole, so it reaches the VM through that controller: remove the ${planned.name} entry, or plug the device into a port of another controller`,
      );
  }
}

function checkDefinition(
  input: PrepareInput,
  resolved: readonly Resolved[],
  hostdevs: readonly HostdevEntry[],
  errors: string[],
): DefinitionChange & { stale: boolean } {
  const { definition, inventory, config } = input;
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
        errors.push(`${r.planned.name} moved ${was} → ${now}: the definition is stale${there}`);
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
      errors.push(
        `${r.planned.name}: the definition has no entry for ${desiredText(r.desired)}; run qemu-hook apply`,
      );
    }
  }
  for (const h of hostdevs) {
    if (h.ourName && !configured.has(h.ourName.entry)) {
      stale = true;
      errors.push(
        `the definition still has ${h.alias} (${sourceText(h)}), which is no longer in the config; run qemu-hook apply`,
      );
    }
  }
  const desired = resolved.map((r) => r.desired);
  // An entry that failed to resolve keeps whatever the definition has for it.
  const unresolved = config.devices.filter((e) => !resolved.some((r) => r.entry === e)).map((e) => e.name);
  const rewrite = rewriteHostdevs(definition.xml, desired, {
    managedEntries: (alias) =>
      !unresolved.some((n) => alias === aliasFor(n, 0) || alias.startsWith(`${aliasFor(n, 0)}-`)),
  });
  return {
    changed: rewrite.changed,
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
