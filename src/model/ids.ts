import { UsageError } from './errors.js';

// Identifiers become values at the edge: the matcher never compares raw strings.

/** A 16-bit id (vendor, device, subsystem, USB vendor/product) as 4 lowercase hex digits. */
export type HexId = string & { readonly __hexId: unique symbol };

const HEX_ID = /^(?:0x)?([0-9a-f]{1,4})$/i;

export function parseHexId(text: string): HexId | null {
  const m = HEX_ID.exec(text.trim());
  return m ? (m[1]!.toLowerCase().padStart(4, '0') as HexId) : null;
}

export function hexId(text: string, what = 'id'): HexId {
  const id = parseHexId(text);
  if (!id) throw new UsageError(`${what} "${text}" is not a 16-bit hex id (e.g. 10de or 0x10de)`);
  return id;
}

/** A PCI class code as 6 lowercase hex digits (class, subclass, prog-if). */
export type PciClassCode = string & { readonly __pciClass: unique symbol };

export function parsePciClass(text: string): PciClassCode | null {
  const m = /^(?:0x)?([0-9a-f]{6})$/i.exec(text.trim());
  return m ? (m[1]!.toLowerCase() as PciClassCode) : null;
}

/** A class criterion: 2, 4 or 6 hex digits, matched as a prefix of the 6-digit class code. */
export type PciClassPrefix = string & { readonly __pciClassPrefix: unique symbol };

export function parsePciClassPrefix(text: string): PciClassPrefix | null {
  const m = /^(?:0x)?([0-9a-f]{2}|[0-9a-f]{4}|[0-9a-f]{6})$/i.exec(text.trim());
  return m ? (m[1]!.toLowerCase() as PciClassPrefix) : null;
}

export function classMatches(code: PciClassCode, prefix: PciClassPrefix): boolean {
  return code.startsWith(prefix);
}

/** PCI class codes this project cares about. */
export const PCI_CLASS = {
  displayVga: '0300',
  display: '03',
  bridge: '06',
  hostBridge: '0600',
  storage: '01',
  network: '02',
} as const;

export function isBridgeClass(code: PciClassCode): boolean {
  return code.startsWith(PCI_CLASS.bridge);
}

export function parseMac(text: string): string | null {
  const t = text.trim().toLowerCase();
  return /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/.test(t) ? t : null;
}
