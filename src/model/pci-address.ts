import { UsageError } from './errors.js';

const FULL = /^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i;
const PATTERN = /^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7*])$/i;

/** A PCI address (domain:bus:slot.function), canonical form "0000:01:00.0". */
export class PciAddress {
  private constructor(
    readonly domain: number,
    readonly bus: number,
    readonly slot: number,
    readonly fn: number,
  ) {}

  static of(domain: number, bus: number, slot: number, fn: number): PciAddress {
    if (
      domain > 0xffff ||
      bus > 0xff ||
      slot > 0x1f ||
      fn > 7 ||
      [domain, bus, slot, fn].some((n) => n < 0)
    ) {
      throw new UsageError(`PCI address out of range: ${domain}:${bus}:${slot}.${fn}`);
    }
    return new PciAddress(domain, bus, slot, fn);
  }

  /** "0000:01:00.0" or "01:00.0" (domain 0). Returns null when malformed. */
  static tryParse(text: string): PciAddress | null {
    const m = FULL.exec(text.trim());
    if (!m) return null;
    const [domain, bus, slot, fn] = [m[1] ?? '0', m[2]!, m[3]!, m[4]!].map((s) => Number.parseInt(s, 16));
    if (slot! > 0x1f) return null;
    return new PciAddress(domain!, bus!, slot!, fn!);
  }

  static parse(text: string): PciAddress {
    const a = PciAddress.tryParse(text);
    if (!a) throw new UsageError(`"${text}" is not a PCI address (expected e.g. 0000:01:00.0)`);
    return a;
  }

  /** libvirt node device name: pci_0000_01_00_0. */
  static fromNodedevName(name: string): PciAddress | null {
    const m = /^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$/i.exec(name);
    return m ? PciAddress.tryParse(`${m[1]}:${m[2]}:${m[3]}.${m[4]}`) : null;
  }

  toString(): string {
    return `${hex(this.domain, 4)}:${hex(this.bus, 2)}:${hex(this.slot, 2)}.${this.fn}`;
  }

  /** The slot this function belongs to, "0000:01:00". */
  get slotKey(): string {
    return `${hex(this.domain, 4)}:${hex(this.bus, 2)}:${hex(this.slot, 2)}`;
  }

  get nodedevName(): string {
    return `pci_${hex(this.domain, 4)}_${hex(this.bus, 2)}_${hex(this.slot, 2)}_${this.fn}`;
  }

  equals(other: PciAddress | null | undefined): boolean {
    return !!other && this.toString() === other.toString();
  }

  compare(other: PciAddress): number {
    return this.domain - other.domain || this.bus - other.bus || this.slot - other.slot || this.fn - other.fn;
  }
}

/** An address criterion: a full address, or one with `*` for the function ("0000:01:00.*"). */
export class PciAddressPattern {
  private constructor(
    readonly slotKey: string,
    readonly fn: number | '*',
  ) {}

  static tryParse(text: string): PciAddressPattern | null {
    const m = PATTERN.exec(text.trim());
    if (!m) return null;
    const fn = m[4] === '*' ? '*' : Number(m[4]);
    const base = PciAddress.tryParse(`${m[1] ?? '0'}:${m[2]}:${m[3]}.0`);
    return base ? new PciAddressPattern(base.slotKey, fn) : null;
  }

  matches(address: PciAddress): boolean {
    return address.slotKey === this.slotKey && (this.fn === '*' || this.fn === address.fn);
  }

  toString(): string {
    return `${this.slotKey}.${this.fn}`;
  }
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
