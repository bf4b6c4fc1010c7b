import { type HexId, parseHexId } from '../model/ids.js';
import { PciAddress } from '../model/pci-address.js';

// libvirt reads these attributes with strtoul base 0: '0x1f' is hex, '017' octal, '15' decimal.
// Values are compared after parsing, so '0x01' and '1' are the same bus (virinst does the same).

export function parseLibvirtUint(text: string | null | undefined): number | null {
  if (text === null || text === undefined) return null;
  const t = text.trim();
  if (/^0x[0-9a-f]+$/i.test(t)) return Number.parseInt(t.slice(2), 16);
  if (/^0[0-7]*$/.test(t)) return Number.parseInt(t, 8);
  if (/^[1-9][0-9]*$/.test(t)) return Number.parseInt(t, 10);
  return null;
}

/** A USB vendor/product id attribute ('0x046d') as a HexId. */
export function parseLibvirtHexId(text: string | null | undefined): HexId | null {
  const n = parseLibvirtUint(text);
  return n === null || n > 0xffff ? null : parseHexId(n.toString(16));
}

/** A PCI address from libvirt's four attributes; a missing domain is 0, as libvirt reads it. */
export function pciAddressFromAttrs(get: (name: string) => string | null): PciAddress | null {
  const domainText = get('domain');
  const domain = domainText === null ? 0 : parseLibvirtUint(domainText);
  const bus = parseLibvirtUint(get('bus'));
  const slot = parseLibvirtUint(get('slot'));
  const fn = parseLibvirtUint(get('function'));
  if (domain === null || bus === null || slot === null || fn === null) return null;
  if (domain > 0xffff || bus > 0xff || slot > 0x1f || fn > 7) return null;
  return PciAddress.of(domain, bus, slot, fn);
}

/** libvirt's own spelling of a host PCI address. */
export function pciAddressAttrs(a: PciAddress): Array<[string, string]> {
  return [
    ['domain', `0x${hex(a.domain, 4)}`],
    ['bus', `0x${hex(a.bus, 2)}`],
    ['slot', `0x${hex(a.slot, 2)}`],
    ['function', `0x${a.fn.toString(16)}`],
  ];
}

export function hexIdAttr(id: HexId): string {
  return `0x${id}`;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
