import { InvariantError } from '../model/errors.js';
import {
  DomainXml,
  type HostdevEntry,
  hostdevLikeElements,
  type LocatedHostdev,
  OUR_ALIAS_PREFIX,
} from './domain-xml.js';
import { Editor } from './editor.js';
import {
  type DesiredHostdev,
  describeDesired,
  describeEntry,
  newElement,
  setAlias,
  updateSource,
} from './hostdev-write.js';
import { selectElements } from './select.js';

export type { DesiredHostdev } from './hostdev-write.js';

export interface RewriteResult {
  xml: string;
  changed: boolean;
  /** One line per change, for humans: 'gpu: 0000:01:00.0 → 0000:02:00.0', 'adopted …', 'added …', 'removed …'. */
  actions: string[];
}

export interface RewriteOptions {
  /**
   * Whether a tagged entry that is not desired is ours to remove (default: every one is). Lets a
   * caller keep entries it could not resolve this time instead of dropping them.
   */
  managedEntries?: (alias: string) => boolean;
  /**
   * Whether an adopted entry that carries an alias of the user's own (`ua-myGPU`) is renamed to
   * ours. Default: no: the alias is kept and said so (apply asks before renaming).
   */
  renameUserAliases?: boolean;
}

/**
 * Makes the definition's passthrough entries match `desired`, changing nothing else: the result
 * is the input with a few spliced ranges, so comments, quoting and unknown elements survive.
 * Running it again on its own output with the same `desired` changes nothing.
 */
export function rewriteHostdevs(
  /** The definition, as text or already parsed (a caller that has parsed it saves a second parse). */
  xml: string | DomainXml,
  desired: readonly DesiredHostdev[],
  opts: RewriteOptions = {},
): RewriteResult {
  checkDesired(desired);
  const dx = typeof xml === 'string' ? DomainXml.parse(xml) : xml;
  const ed = new Editor(dx.located);
  const existing = dx.locatedHostdevs();
  const claimed = new Map<DesiredHostdev, LocatedHostdev>();
  const taken = new Set<LocatedHostdev>();

  // Our own tag first: it follows the device wherever the hardware moved.
  for (const d of desired) {
    const h = existing.find((e) => !taken.has(e) && e.entry.alias === d.alias && e.entry.kind === d.kind);
    if (h) claim(d, h);
  }
  // Then untagged entries already pointing at the device: adopt rather than duplicate.
  for (const d of desired) {
    if (claimed.has(d)) continue;
    const candidates = existing.filter((e) => !taken.has(e) && !isOurs(e.entry) && sameSource(e.entry, d));
    const h = candidates.find((e) => sameUsbAddress(e.entry, d)) ?? candidates[0];
    if (h) claim(d, h);
  }

  const actions: string[] = [];
  const added: DesiredHostdev[] = [];
  for (const d of desired) {
    const h = claimed.get(d);
    if (!h) {
      added.push(d);
      actions.push(`added ${label(d.alias)}: ${describeDesired(d)}`);
      continue;
    }
    const adopted = h.entry.alias !== d.alias;
    // `ua-…` is an alias the user chose (libvirt keeps only those in a persistent definition);
    // one libvirt generated (`hostdev0`) is replaced without ceremony.
    const userAlias = adopted && (h.entry.alias?.startsWith('ua-') ?? false);
    const keepAlias = userAlias && !opts.renameUserAliases;
    if (adopted) {
      const alias = !userAlias
        ? h.entry.alias === null
          ? ''
          : ` (was alias '${h.entry.alias}')`
        : keepAlias
          ? ` (keeps your alias '${h.entry.alias}')`
          : ` (alias '${h.entry.alias}' renamed to '${d.alias}')`;
      // libvirt would detach and reattach a managed PCI device itself, behind the hook's back.
      const unmanage = h.entry.managed === 'yes' && d.kind !== 'usb';
      const managed = unmanage ? "; managed='yes' → 'no': qemu-hook detaches it and gives it back" : '';
      if (unmanage) ed.setAttr(h.element, 'managed', 'no');
      // An entry kept as it is (its own alias too) is no change worth a line.
      if (!keepAlias || unmanage)
        actions.push(`adopted ${label(d.alias)}: ${describeEntry(h.entry)}${alias}${managed}`);
    }
    for (const change of updateSource(ed, h.element, d)) actions.push(`${label(d.alias)}: ${change}`);
    if (adopted && !keepAlias) setAlias(ed, h.element, d.alias);
  }

  const wanted = new Set(desired.map((d) => d.alias));
  const managed = opts.managedEntries ?? (() => true);
  const removed = new Set<LocatedHostdev>();
  for (const h of existing) {
    const alias = h.entry.alias;
    if (taken.has(h) || alias === null || !isOurs(h.entry)) continue;
    // A desired alias left unclaimed is a duplicate or a changed device type: ours either way.
    if (!wanted.has(alias) && !managed(alias)) continue;
    ed.remove(h.element);
    removed.add(h);
    const d = desired.find((x) => x.alias === alias);
    const why = !d ? '' : d.kind === h.entry.kind ? ' (duplicate)' : ` (now ${d.kind})`;
    actions.push(`removed ${label(alias)}: ${describeEntry(h.entry)}${why}`);
  }

  if (added.length > 0) addElements(ed, dx, added, removed);

  const out = ed.apply();
  return { xml: out, changed: out !== dx.text(), actions };

  function claim(d: DesiredHostdev, h: LocatedHostdev): void {
    claimed.set(d, h);
    taken.add(h);
  }
}

/** New entries go after the last surviving passthrough device, else at the end of <devices>. */
function addElements(ed: Editor, dx: DomainXml, added: DesiredHostdev[], removed: Set<LocatedHostdev>): void {
  const nodes = added.map(newElement);
  const gone = new Set([...removed].map((h) => h.element));
  const anchor = hostdevLikeElements(dx.located.doc)
    .filter((el) => !gone.has(el))
    .at(-1);
  const devices = selectElements('/domain/devices', dx.located.doc)[0];
  if (anchor && devices) {
    ed.insertChildren(devices, nodes, { after: anchor });
  } else if (devices) {
    ed.insertChildren(devices, nodes, 'last');
  } else {
    const root = dx.located.doc.documentElement!;
    ed.insertChild(root, { name: 'devices', attrs: [], children: nodes }, 'last');
  }
}

function checkDesired(desired: readonly DesiredHostdev[]): void {
  const seen = new Set<string>();
  for (const d of desired) {
    if (!d.alias.startsWith(OUR_ALIAS_PREFIX)) {
      throw new InvariantError(`desired hostdev alias '${d.alias}' does not start with ${OUR_ALIAS_PREFIX}`);
    }
    if (seen.has(d.alias)) throw new InvariantError(`desired hostdev alias '${d.alias}' appears twice`);
    seen.add(d.alias);
  }
}

function isOurs(e: HostdevEntry): boolean {
  return e.alias?.startsWith(OUR_ALIAS_PREFIX) ?? false;
}

function sameSource(e: HostdevEntry, d: DesiredHostdev): boolean {
  if (e.kind !== d.kind) return false;
  if (d.kind === 'usb') return e.usb?.vendor === d.vendor && e.usb?.product === d.product;
  return d.address.equals(e.pciAddress);
}

/** Among identical USB devices, prefer the entry already naming the same bus/device. */
function sameUsbAddress(e: HostdevEntry, d: DesiredHostdev): boolean {
  return d.kind === 'usb' && e.usb?.bus === (d.bus ?? null) && e.usb?.device === (d.device ?? null);
}

function label(alias: string): string {
  return alias.startsWith(OUR_ALIAS_PREFIX) ? alias.slice(OUR_ALIAS_PREFIX.length) : alias;
}
