import { readFileSync } from 'node:fs';
import type { HexId } from '../model/ids.js';

/** Vendor and device names from pci.ids; every lookup answers null when the file is absent. */
export interface PciNames {
  /** The pci.ids file the names come from, null when none was found. */
  readonly source: string | null;
  vendorName(vendor: HexId): string | null;
  deviceName(vendor: HexId, device: HexId): string | null;
  subsystemName(vendor: HexId, device: HexId, subVendor: HexId, subDevice: HexId): string | null;
}

export const NO_PCI_NAMES: PciNames = {
  source: null,
  vendorName: () => null,
  deviceName: () => null,
  subsystemName: () => null,
};

/** A block of lines in the file: [start, end) character offsets. */
interface Span {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** The file the resident hook's worker indexed while it waited (see PciIds.indexAhead). */
let indexedAhead: PciIds | null = null;

/**
 * pci.ids (about 1.3 MB, 38 000 lines) indexed lazily: the first lookup indexes only the vendor
 * lines (about 7 ms for a file that size); a vendor's device lines, and a device's subsystem lines, are indexed when first asked for.
 */
export class PciIds implements PciNames {
  private vendors: Map<string, Span> | null = null;
  private readonly devices = new Map<string, Map<string, Span>>();

  constructor(
    private readonly text: string,
    readonly source: string | null = null,
  ) {}

  /** The first readable file among `candidates`; NO_PCI_NAMES when there is none. */
  static load(candidates: readonly string[]): PciNames {
    for (const path of candidates) {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        continue;
      }
      // The same file, read again: the index made ahead of time is the index of this text.
      if (indexedAhead?.source === path && indexedAhead.text === text) return indexedAhead;
      return new PciIds(text, path);
    }
    return NO_PCI_NAMES;
  }

  /**
   * For the resident hook's waiting worker (cli/resident/worker.ts): reads the file and indexes its
   * vendors before the event, which `load` then uses if the file still reads the same.
   */
  static indexAhead(candidates: readonly string[]): void {
    const names = PciIds.load(candidates);
    if (!(names instanceof PciIds)) return;
    names.vendorIndex();
    indexedAhead = names;
  }

  vendorName(vendor: HexId): string | null {
    return this.vendorIndex().get(vendor)?.name ?? null;
  }

  deviceName(vendor: HexId, device: HexId): string | null {
    return this.deviceIndex(vendor)?.get(device)?.name ?? null;
  }

  subsystemName(vendor: HexId, device: HexId, subVendor: HexId, subDevice: HexId): string | null {
    const span = this.deviceIndex(vendor)?.get(device);
    if (!span) return null;
    const key = `${subVendor} ${subDevice}`;
    let name: string | null = null;
    this.eachLine(span.start, span.end, (pos, eol) => {
      // "\t\t1458 403b  GV-N3090GAMING OC-24GD"
      if (this.text.startsWith(key, pos + 2) && this.text.charCodeAt(pos + 1) === TAB) {
        name = this.text.slice(pos + 13, eol).trim();
        return false;
      }
      return true;
    });
    return name;
  }

  private vendorIndex(): Map<string, Span> {
    if (this.vendors) return this.vendors;
    const vendors = new Map<string, Span>();
    const { text } = this;
    // Vendor lines are the only ones that start with a hex digit, up to the class list ("C 03  …").
    // A regular expression finds them in native code: about twice as fast as a loop over lines.
    const classes = text.indexOf('\nC ');
    const end = classes < 0 ? text.length : classes + 1;
    const vendorLine = /(?:^|\n)([0-9a-fA-F]{4}) {2}([^\n]*)/g;
    let prev: { id: string; name: string; start: number } | null = null;
    for (let m = vendorLine.exec(text); m && m.index < end; m = vendorLine.exec(text)) {
      const lineStart = text.charCodeAt(m.index) === NL ? m.index + 1 : m.index;
      if (prev) vendors.set(prev.id, { name: prev.name, start: prev.start, end: lineStart });
      prev = { id: m[1]!.toLowerCase(), name: m[2]!.trim(), start: m.index + m[0].length + 1 };
    }
    if (prev) vendors.set(prev.id, { name: prev.name, start: prev.start, end });
    this.vendors = vendors;
    return vendors;
  }

  private deviceIndex(vendor: HexId): Map<string, Span> | null {
    const cached = this.devices.get(vendor);
    if (cached) return cached;
    const span = this.vendorIndex().get(vendor);
    if (!span) return null;
    const devices = new Map<string, Span>();
    let prev: { id: string; name: string; start: number } | null = null;
    this.eachLine(span.start, span.end, (pos, eol) => {
      if (this.text.charCodeAt(pos) === TAB && this.text.charCodeAt(pos + 1) !== TAB) {
        if (prev) devices.set(prev.id, { name: prev.name, start: prev.start, end: pos });
        prev = {
          id: this.text.slice(pos + 1, pos + 5).toLowerCase(),
          name: this.text.slice(pos + 7, eol).trim(),
          start: eol + 1,
        };
      }
      return true;
    });
    const last = prev as { id: string; name: string; start: number } | null;
    if (last) devices.set(last.id, { name: last.name, start: last.start, end: span.end });
    this.devices.set(vendor, devices);
    return devices;
  }

  /** Calls `fn(lineStart, lineEnd)` for each line in [start, end) until it returns false. */
  private eachLine(start: number, end: number, fn: (pos: number, eol: number) => boolean): void {
    let pos = start;
    while (pos < end) {
      let eol = this.text.indexOf('\n', pos);
      if (eol < 0 || eol > end) eol = end;
      if (!fn(pos, eol)) return;
      pos = eol + 1;
    }
  }
}

const TAB = 0x09;
const NL = 0x0a;
