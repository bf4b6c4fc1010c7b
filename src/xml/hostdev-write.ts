import type { Element } from '@xmldom/xmldom';
import type { HexId } from '../model/ids.js';
import type { PciAddress } from '../model/pci-address.js';
import type { HostdevEntry } from './domain-xml.js';
import type { Editor, NewElement } from './editor.js';
import { hexIdAttr, parseLibvirtUint, pciAddressAttrs, pciAddressFromAttrs } from './numbers.js';
import { childElements, firstChild } from './select.js';

export type DesiredHostdev =
  | { alias: string; kind: 'pci'; address: PciAddress }
  | { alias: string; kind: 'usb'; vendor: HexId; product: HexId; bus?: number; device?: number }
  | { alias: string; kind: 'sriov'; address: PciAddress; mac?: string; vlan?: number };

// Only the host side of an entry is ours: guest <address>, <rom>, <boot>, <driver> and anything
// unknown stay as written. Attributes are compared as libvirt reads them and rewritten only
// when the value differs, so an entry that is already right produces no edit at all.

/** Brings an existing element's host source in line with `d`; returns what changed, for humans. */
export function updateSource(ed: Editor, el: Element, d: DesiredHostdev): string[] {
  switch (d.kind) {
    case 'pci':
      return updatePciSource(ed, el, d.address, false);
    case 'usb':
      return updateUsbSource(ed, el, d);
    case 'sriov':
      return [...updatePciSource(ed, el, d.address, true), ...updateMacVlan(ed, el, d)];
  }
}

/** Tags an adopted element with our alias, where libvirt itself writes <alias> (before <rom>/<address>). */
export function setAlias(ed: Editor, el: Element, alias: string): void {
  const existing = firstChild(el, 'alias');
  if (existing) {
    ed.setAttr(existing, 'name', alias);
    return;
  }
  const kids = childElements(el);
  const at = kids.findIndex((k) => k.tagName === 'rom' || k.tagName === 'address');
  const before = at > 0 ? kids[at - 1] : undefined;
  ed.insertChild(el, aliasElement(alias), before ? { after: before } : 'last');
}

export function newElement(d: DesiredHostdev): NewElement {
  switch (d.kind) {
    case 'pci':
      return {
        name: 'hostdev',
        attrs: [
          ['mode', 'subsystem'],
          ['type', 'pci'],
          ['managed', 'no'],
        ],
        children: [pciSource(d.address, false), aliasElement(d.alias)],
      };
    case 'usb':
      return {
        name: 'hostdev',
        attrs: [
          ['mode', 'subsystem'],
          ['type', 'usb'],
          ['managed', 'no'],
        ],
        children: [
          {
            name: 'source',
            attrs: [],
            children: [vendorElement(d.vendor), productElement(d.product), ...usbAddress(d)],
          },
          aliasElement(d.alias),
        ],
      };
    case 'sriov':
      return {
        name: 'interface',
        attrs: [
          ['type', 'hostdev'],
          ['managed', 'no'],
        ],
        children: [
          pciSource(d.address, true),
          ...(d.mac === undefined ? [] : [macElement(d.mac)]),
          ...(d.vlan === undefined ? [] : [vlanElement(d.vlan)]),
          aliasElement(d.alias),
        ],
      };
  }
}

/** The host source of an entry or a desired device, one short phrase. */
export function describeEntry(e: HostdevEntry): string {
  switch (e.kind) {
    case 'pci':
      return `pci ${e.pciAddress ?? '(no address)'}`;
    case 'usb':
      return `usb ${usbText(e.usb?.vendor ?? null, e.usb?.product ?? null, e.usb?.bus ?? null, e.usb?.device ?? null)}`;
    case 'sriov':
      return `VF ${e.pciAddress ?? '(no address)'}${e.mac ? ` mac ${e.mac}` : ''}${e.vlan === null ? '' : ` vlan ${e.vlan}`}`;
  }
}

export function describeDesired(d: DesiredHostdev): string {
  switch (d.kind) {
    case 'pci':
      return `pci ${d.address}`;
    case 'usb':
      return `usb ${usbText(d.vendor, d.product, d.bus ?? null, d.device ?? null)}`;
    case 'sriov':
      return `VF ${d.address}${d.mac ? ` mac ${d.mac}` : ''}${d.vlan === undefined ? '' : ` vlan ${d.vlan}`}`;
  }
}

function updatePciSource(ed: Editor, el: Element, address: PciAddress, typed: boolean): string[] {
  const source = firstChild(el, 'source');
  if (!source) {
    ed.insertChild(el, pciSource(address, typed), 'first');
    return [`(no source) → ${address}`];
  }
  const current = firstChild(source, 'address');
  if (!current) {
    ed.insertChild(source, pciAddressElement(address, typed), 'first');
    return [`(no address) → ${address}`];
  }
  let changed = false;
  for (const [name, value] of pciAddressAttrs(address)) {
    const raw = current.getAttribute(name);
    const have = raw === null && name === 'domain' ? 0 : parseLibvirtUint(raw);
    if (have !== parseLibvirtUint(value)) {
      ed.setAttr(current, name, value);
      changed = true;
    }
  }
  if (!changed) return [];
  const before = pciAddressFromAttrs((n) => current.getAttribute(n));
  return [`${before ?? '(bad address)'} → ${address}`];
}

function updateUsbSource(ed: Editor, el: Element, d: Extract<DesiredHostdev, { kind: 'usb' }>): string[] {
  const wanted = usbText(d.vendor, d.product, d.bus ?? null, d.device ?? null);
  const source = firstChild(el, 'source');
  if (!source) {
    ed.insertChild(
      el,
      {
        name: 'source',
        attrs: [],
        children: [vendorElement(d.vendor), productElement(d.product), ...usbAddress(d)],
      },
      'first',
    );
    return [`(no source) → ${wanted}`];
  }
  const vendor = firstChild(source, 'vendor');
  const product = firstChild(source, 'product');
  const address = firstChild(source, 'address');
  const before = usbText(
    vendor ? hexOf(vendor.getAttribute('id')) : null,
    product ? hexOf(product.getAttribute('id')) : null,
    parseLibvirtUint(address?.getAttribute('bus')),
    parseLibvirtUint(address?.getAttribute('device')),
  );
  let changed = setNumber(ed, vendor, 'id', Number.parseInt(d.vendor, 16), hexIdAttr(d.vendor));
  changed = setNumber(ed, product, 'id', Number.parseInt(d.product, 16), hexIdAttr(d.product)) || changed;
  if (!vendor) {
    ed.insertChildren(
      source,
      product ? [vendorElement(d.vendor)] : [vendorElement(d.vendor), productElement(d.product)],
      'first',
    );
    changed = true;
  }
  if (!product && vendor) {
    ed.insertChild(source, productElement(d.product), { after: vendor });
    changed = true;
  }
  if (d.bus === undefined && d.device === undefined) {
    if (address) {
      ed.remove(address);
      changed = true;
    }
  } else if (address) {
    if (d.bus !== undefined) changed = setNumber(ed, address, 'bus', d.bus, String(d.bus)) || changed;
    if (d.device !== undefined)
      changed = setNumber(ed, address, 'device', d.device, String(d.device)) || changed;
  } else {
    ed.insertChildren(source, usbAddress(d), 'last');
    changed = true;
  }
  return changed ? [`${before} → ${wanted}`] : [];
}

function updateMacVlan(ed: Editor, el: Element, d: Extract<DesiredHostdev, { kind: 'sriov' }>): string[] {
  const lines: string[] = [];
  const source = firstChild(el, 'source');
  const mac = firstChild(el, 'mac');
  const place = (after: Element | undefined) => (after ? { after } : 'last');
  // No MAC wanted: keep whatever is there, since libvirt writes a random one on define.
  if (d.mac !== undefined) {
    const have = mac?.getAttribute('address') ?? null;
    if (!mac) {
      ed.insertChild(el, macElement(d.mac), place(source));
      lines.push(`mac (none) → ${d.mac}`);
    } else if (have?.toLowerCase() !== d.mac.toLowerCase()) {
      ed.setAttr(mac, 'address', d.mac);
      lines.push(`mac ${have ?? '(none)'} → ${d.mac}`);
    }
  }
  const vlan = firstChild(el, 'vlan');
  const tags = vlan ? childElements(vlan, 'tag') : [];
  const have = parseLibvirtUint(tags[0]?.getAttribute('id'));
  if (d.vlan === undefined) {
    if (vlan) {
      ed.remove(vlan);
      lines.push(`vlan ${tags.map((t) => t.getAttribute('id')).join(',')} → none`);
    }
  } else if (!vlan) {
    // libvirt writes <vlan> after <source>; after <mac> only when that comes later.
    const anchor = [source, mac]
      .filter((e) => e !== undefined)
      .sort((a, b) => ed.startOf(a) - ed.startOf(b))
      .at(-1);
    ed.insertChild(el, vlanElement(d.vlan), place(anchor));
    lines.push(`vlan none → ${d.vlan}`);
  } else if (tags.length === 1 && vlan.getAttribute('trunk') !== 'yes') {
    if (have !== d.vlan) {
      ed.setAttr(tags[0]!, 'id', String(d.vlan));
      lines.push(`vlan ${have ?? '?'} → ${d.vlan}`);
    }
  } else {
    // A trunk is not something we can express: one tag replaces it.
    ed.replaceElement(vlan, vlanElement(d.vlan));
    lines.push(`vlan ${tags.map((t) => t.getAttribute('id')).join(',')} → ${d.vlan}`);
  }
  return lines;
}

function setNumber(ed: Editor, el: Element | undefined, attr: string, want: number, text: string): boolean {
  if (!el || parseLibvirtUint(el.getAttribute(attr)) === want) return false;
  ed.setAttr(el, attr, text);
  return true;
}

function hexOf(raw: string | null): HexId | null {
  const n = parseLibvirtUint(raw);
  return n === null ? null : (n.toString(16).padStart(4, '0') as HexId);
}

function usbText(
  vendor: HexId | null,
  product: HexId | null,
  bus: number | null,
  device: number | null,
): string {
  const ids = `${vendor ?? '?'}:${product ?? '?'}`;
  if (bus === null && device === null) return ids;
  return `${ids} bus ${bus ?? '?'} device ${device ?? '?'}`;
}

function pciSource(address: PciAddress, typed: boolean): NewElement {
  return { name: 'source', attrs: [], children: [pciAddressElement(address, typed)] };
}

function pciAddressElement(address: PciAddress, typed: boolean): NewElement {
  const attrs = pciAddressAttrs(address);
  return { name: 'address', attrs: typed ? [['type', 'pci'], ...attrs] : attrs };
}

function usbAddress(d: { bus?: number; device?: number }): NewElement[] {
  if (d.bus === undefined && d.device === undefined) return [];
  const attrs: Array<[string, string]> = [];
  if (d.bus !== undefined) attrs.push(['bus', String(d.bus)]);
  if (d.device !== undefined) attrs.push(['device', String(d.device)]);
  return [{ name: 'address', attrs }];
}

function vendorElement(id: HexId): NewElement {
  return { name: 'vendor', attrs: [['id', hexIdAttr(id)]] };
}

function productElement(id: HexId): NewElement {
  return { name: 'product', attrs: [['id', hexIdAttr(id)]] };
}

function macElement(mac: string): NewElement {
  return { name: 'mac', attrs: [['address', mac]] };
}

function vlanElement(tag: number): NewElement {
  return { name: 'vlan', attrs: [], children: [{ name: 'tag', attrs: [['id', String(tag)]] }] };
}

function aliasElement(alias: string): NewElement {
  return { name: 'alias', attrs: [['name', alias]] };
}
