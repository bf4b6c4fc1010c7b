import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/model/errors.js';
import { classMatches, hexId, parseHexId, parsePciClass, parsePciClassPrefix } from '../../src/model/ids.js';
import { PciAddress, PciAddressPattern } from '../../src/model/pci-address.js';

describe('PciAddress', () => {
  it('parses the canonical form and the short form, any case', () => {
    expect(PciAddress.parse('0000:01:00.0').toString()).toBe('0000:01:00.0');
    expect(PciAddress.parse('01:00.1').toString()).toBe('0000:01:00.1');
    expect(PciAddress.parse('0000:3D:1F.7').toString()).toBe('0000:3d:1f.7');
    expect(PciAddress.parse('1:2:3.4').toString()).toBe('0001:02:03.4');
  });

  it('rejects malformed addresses with a usage error naming the input', () => {
    for (const bad of ['', '01:00', '0000:01:00.8', '0000:01:20.0', 'zz:00.0', '0000:01:00.0.1']) {
      expect(PciAddress.tryParse(bad)).toBeNull();
    }
    expect(() => PciAddress.parse('01:00')).toThrowError(UsageError);
    expect(() => PciAddress.parse('01:00')).toThrowError(/"01:00" is not a PCI address/);
  });

  it('knows its slot, its libvirt node device name and its order', () => {
    const a = PciAddress.parse('0000:01:00.1');
    expect(a.slotKey).toBe('0000:01:00');
    expect(a.nodedevName).toBe('pci_0000_01_00_1');
    expect(PciAddress.fromNodedevName('pci_0000_01_00_1')!.equals(a)).toBe(true);
    expect(PciAddress.fromNodedevName('usb_3_2')).toBeNull();
    const sorted = ['0000:02:00.0', '0000:01:00.1', '0000:01:00.0']
      .map((s) => PciAddress.parse(s))
      .sort((x, y) => x.compare(y));
    expect(sorted.map(String)).toEqual(['0000:01:00.0', '0000:01:00.1', '0000:02:00.0']);
  });

  it('matches patterns with a wildcard function', () => {
    const p = PciAddressPattern.tryParse('0000:01:00.*')!;
    expect(p.matches(PciAddress.parse('0000:01:00.3'))).toBe(true);
    expect(p.matches(PciAddress.parse('0000:01:01.0'))).toBe(false);
    const exact = PciAddressPattern.tryParse('01:00.1')!;
    expect(exact.matches(PciAddress.parse('0000:01:00.1'))).toBe(true);
    expect(exact.matches(PciAddress.parse('0000:01:00.0'))).toBe(false);
  });
});

describe('ids', () => {
  it('turns hex ids into 4 lowercase digits, whatever the spelling', () => {
    expect(parseHexId('10DE')).toBe('10de');
    expect(parseHexId('0x10de')).toBe('10de');
    expect(parseHexId('8')).toBe('0008');
    expect(parseHexId('10dex')).toBeNull();
    expect(parseHexId('123456')).toBeNull();
    expect(() => hexId('zz', 'vendor')).toThrowError(/vendor "zz" is not a 16-bit hex id/);
  });

  it('matches class prefixes of 2, 4 or 6 digits only', () => {
    const vga = parsePciClass('0x030000')!;
    expect(classMatches(vga, parsePciClassPrefix('03')!)).toBe(true);
    expect(classMatches(vga, parsePciClassPrefix('0300')!)).toBe(true);
    expect(classMatches(vga, parsePciClassPrefix('0302')!)).toBe(false);
    expect(parsePciClassPrefix('030')).toBeNull();
  });
});
