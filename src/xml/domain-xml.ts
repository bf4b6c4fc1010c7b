import type { Document, Element } from '@xmldom/xmldom';
import { XmlError } from '../model/errors.js';
import type { HexId } from '../model/ids.js';
import type { PciAddress } from '../model/pci-address.js';
import { LocatedDocument } from './located.js';
import { parseLibvirtHexId, parseLibvirtUint, pciAddressFromAttrs } from './numbers.js';
import { firstChild, selectElements, selectString } from './select.js';

export type HostdevKind = 'pci' | 'usb' | 'sriov';

export interface HostdevEntry {
  kind: HostdevKind;
  /** The `<alias name=…>` value, e.g. 'ua-qemuhook-gpu-1'. */
  alias: string | null;
  /** Parsed from ua-qemuhook-<entry>[-<N>]; index 0 when there is no suffix. */
  ourName: { entry: string; index: number } | null;
  /** Host source address (pci, sriov). */
  pciAddress: PciAddress | null;
  usb: { vendor: HexId | null; product: HexId | null; bus: number | null; device: number | null } | null;
  /** Raw attribute: unknown values are reported as written. */
  managed: string | null;
  mac: string | null;
  vlan: number | null;
  /** The guest-side `<address …/>` exactly as written, if present (informational). */
  guestAddress: string | null;
}

/** A hostdev entry with the element it was read from, for the rewriter. */
export interface LocatedHostdev {
  entry: HostdevEntry;
  element: Element;
}

export const OUR_ALIAS_PREFIX = 'ua-qemuhook-';

/** ua-qemuhook-<entry> for an entry's first device, ua-qemuhook-<entry>-<index> for the others. */
export function aliasFor(entry: string, index: number): string {
  return index === 0 ? `${OUR_ALIAS_PREFIX}${entry}` : `${OUR_ALIAS_PREFIX}${entry}-${index}`;
}

/**
 * The inverse of aliasFor. Entry names may contain '-', so a last part counts as an index only
 * when it is a canonical number ≥ 1 ('gpu-0' and 'gpu-01' are entry names): every alias maps
 * back to the one alias aliasFor would write.
 */
export function parseOurAlias(alias: string): { entry: string; index: number } | null {
  if (!alias.startsWith(OUR_ALIAS_PREFIX)) return null;
  const rest = alias.slice(OUR_ALIAS_PREFIX.length);
  if (rest === '') return null;
  const m = /^(.+)-([1-9][0-9]*)$/.exec(rest);
  return m ? { entry: m[1]!, index: Number(m[2]) } : { entry: rest, index: 0 };
}

export class DomainXml {
  private found: LocatedHostdev[] | null = null;

  private constructor(
    readonly located: LocatedDocument,
    readonly name: string,
    readonly uuid: string | null,
  ) {}

  /** Throws XmlError (one line, with line/column when known) for malformed XML or a root that is not <domain>. */
  static parse(text: string): DomainXml {
    const located = LocatedDocument.parse(text);
    const root = located.doc.documentElement;
    if (root?.tagName !== 'domain') {
      throw new XmlError(
        `not a domain definition: the root element is <${root?.tagName ?? ''}>, not <domain>`,
      );
    }
    const name = selectString('/domain/name', located.doc).trim();
    if (name === '') throw new XmlError('domain definition has no <name>');
    const uuid = selectString('/domain/uuid', located.doc).trim();
    return new DomainXml(located, name, uuid === '' ? null : uuid);
  }

  /** parse, with an error that names where the text came from (a file, libvirt) and what to do. */
  static parseFrom(text: string, source: string): DomainXml {
    try {
      return DomainXml.parse(text);
    } catch (err) {
      if (!(err instanceof XmlError)) throw err;
      throw new XmlError(`${source}: ${err.message}; correct the definition (virsh edit)`, { cause: err });
    }
  }

  /** PCI and USB `<hostdev mode='subsystem'>` and `<interface type='hostdev'>`, in document order. */
  hostdevs(): HostdevEntry[] {
    return this.locatedHostdevs().map((h) => h.entry);
  }

  /** Read once: the document is never changed (a rewrite splices the text into a new one). */
  locatedHostdevs(): LocatedHostdev[] {
    if (!this.found) {
      const out: LocatedHostdev[] = [];
      for (const el of hostdevLikeElements(this.located.doc)) {
        const entry = this.read(el);
        if (entry) out.push({ entry, element: el });
      }
      this.found = out;
    }
    return [...this.found];
  }

  text(): string {
    return this.located.text;
  }

  private read(el: Element): HostdevEntry | null {
    const kind = kindOf(el);
    if (!kind) return null;
    const source = firstChild(el, 'source');
    const alias = firstChild(el, 'alias')?.getAttribute('name') ?? null;
    const guest = firstChild(el, 'address');
    const entry: HostdevEntry = {
      kind,
      alias,
      ourName: alias === null ? null : parseOurAlias(alias),
      pciAddress: null,
      usb: null,
      managed: el.getAttribute('managed'),
      mac: null,
      vlan: null,
      guestAddress: guest ? this.slice(guest) : null,
    };
    if (kind === 'usb') {
      const address = firstChild(source, 'address');
      entry.usb = {
        vendor: parseLibvirtHexId(firstChild(source, 'vendor')?.getAttribute('id')),
        product: parseLibvirtHexId(firstChild(source, 'product')?.getAttribute('id')),
        bus: parseLibvirtUint(address?.getAttribute('bus')),
        device: parseLibvirtUint(address?.getAttribute('device')),
      };
    } else {
      const address = firstChild(source, 'address');
      entry.pciAddress = address ? pciAddressFromAttrs((n) => address.getAttribute(n)) : null;
    }
    if (kind === 'sriov') {
      entry.mac = firstChild(el, 'mac')?.getAttribute('address') ?? null;
      entry.vlan = parseLibvirtUint(firstChild(firstChild(el, 'vlan'), 'tag')?.getAttribute('id'));
    }
    return entry;
  }

  private slice(el: Element): string {
    const r = this.located.range(el);
    return this.located.text.slice(r.start, r.end);
  }
}

/**
 * Every device element that passes a host device through (of any type), in document order: where
 * new ones go. One plain step and a filter here: the XPath union `hostdev | interface[...]` sorts
 * its result through a tree, which was a third of the time of planning a start.
 */
export function hostdevLikeElements(doc: Document): Element[] {
  return selectElements('/domain/devices/*', doc).filter(
    (el) => el.tagName === 'hostdev' || (el.tagName === 'interface' && el.getAttribute('type') === 'hostdev'),
  );
}

function kindOf(el: Element): HostdevKind | null {
  if (el.tagName === 'interface') return el.getAttribute('type') === 'hostdev' ? 'sriov' : null;
  if (el.tagName !== 'hostdev') return null;
  // libvirt reads a missing mode as 'subsystem'.
  const mode = el.getAttribute('mode');
  if (mode !== null && mode !== 'subsystem') return null;
  const type = el.getAttribute('type');
  return type === 'pci' || type === 'usb' ? type : null;
}
