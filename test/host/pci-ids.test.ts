import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NO_PCI_NAMES, PciIds } from '../../src/host/pci-ids.js';
import { type HexId, hexId } from '../../src/model/ids.js';
import { REPO } from '../fixtures/fixture-hosts.js';

const FIXTURE = join(REPO, 'fixtures/pci.ids');
const ids = new PciIds(readFileSync(FIXTURE, 'utf8'), FIXTURE);
const h = (s: string): HexId => hexId(s);

describe('PciIds on fixtures/pci.ids', () => {
  it('names vendors, devices and subsystems', () => {
    expect(ids.vendorName(h('10de'))).toBe('NVIDIA Corporation');
    expect(ids.deviceName(h('10de'), h('2204'))).toBe('GA102 [GeForce RTX 3090]');
    expect(ids.deviceName(h('10de'), h('1aef'))).toBe('GA102 High Definition Audio Controller');
    expect(ids.subsystemName(h('10de'), h('2204'), h('1458'), h('403b'))).toBe('GV-N3090GAMING OC-24GD');
    expect(ids.subsystemName(h('10de'), h('2204'), h('147d'), h('2204'))).toBe('RTX 3090 XC3 ULTRA');
  });

  it('answers null for what it does not list', () => {
    expect(ids.vendorName(h('abcd'))).toBeNull();
    expect(ids.deviceName(h('10de'), h('ffff'))).toBeNull();
    expect(ids.deviceName(h('abcd'), h('0001'))).toBeNull();
    expect(ids.subsystemName(h('10de'), h('2204'), h('1458'), h('0000'))).toBeNull();
    // A vendor without devices, followed by another vendor.
    expect(ids.vendorName(h('1458'))).toBe('Gigabyte Technology Co., Ltd');
    expect(ids.deviceName(h('1458'), h('1b21'))).toBeNull();
  });

  it('keeps a vendor’s devices within its block, also for the vendor before the class list', () => {
    expect(ids.deviceName(h('8086'), h('a379'))).toBe('Cannon Lake PCH Thermal Controller');
    expect(ids.deviceName(h('8086'), h('1572'))).toBe('Ethernet Controller X710 for 10GbE SFP+');
    expect(ids.vendorName(h('8087'))).toBe('Intel Corporation');
    // "\t00  VGA compatible controller" under "C 03" is a subclass, not a device of 8087.
    expect(ids.deviceName(h('8087'), h('0000'))).toBeNull();
  });

  it('tells devices from subsystems of the previous device', () => {
    // "\t\t8086 0007  …X710-2" must not be read as a device 8086 of vendor 8086.
    expect(ids.deviceName(h('8086'), h('8086'))).toBeNull();
  });
});

describe('PciIds.load', () => {
  it('takes the first file that exists', () => {
    const names = PciIds.load([join(REPO, 'no/such/pci.ids'), FIXTURE]);
    expect(names.source).toBe(FIXTURE);
    expect(names.vendorName(h('1b73'))).toBe('Fresco Logic');
  });

  it('without any file: null names and no source', () => {
    const names = PciIds.load([join(REPO, 'no/such/pci.ids')]);
    expect(names).toBe(NO_PCI_NAMES);
    expect(names.source).toBeNull();
    expect(names.vendorName(h('10de'))).toBeNull();
    expect(names.deviceName(h('10de'), h('2204'))).toBeNull();
  });
});

describe('PciIds on other shapes of the file', () => {
  it('reads CRLF line ends and upper-case ids', () => {
    const names = new PciIds('# c\r\n10DE  NVIDIA Corporation\r\n\t2204  GA102\r\n\t\t1458 403b  Gaming\r\n');
    expect(names.vendorName(h('10de'))).toBe('NVIDIA Corporation');
    expect(names.deviceName(h('10de'), h('2204'))).toBe('GA102');
    expect(names.subsystemName(h('10de'), h('2204'), h('1458'), h('403b'))).toBe('Gaming');
  });

  it('finds entries anywhere in a file the size of the real one', () => {
    // ~1.3 MB like the real pci.ids: 2500 vendors of 12 devices with 2 subsystems each.
    const lines: string[] = ['# generated'];
    for (let v = 0; v < 2500; v++) {
      lines.push(`${hex(v * 7 + 1)}  Vendor ${v}`);
      for (let d = 0; d < 12; d++) {
        lines.push(`\t${hex(d * 13 + v)}  Device ${v}.${d} [Model ${d}]`);
        lines.push(`\t\t${hex(v)} ${hex(d)}  Card ${v}.${d}`, `\t\t1458 ${hex(d + 1)}  Gigabyte card ${d}`);
      }
    }
    lines.push('C 03  Display controller', '\t00  VGA compatible controller');
    const text = `${lines.join('\n')}\n`;
    expect(text.length).toBeGreaterThan(1_000_000);
    const names = new PciIds(text);
    expect(names.vendorName(h(hex(2499 * 7 + 1)))).toBe('Vendor 2499');
    expect(names.deviceName(h(hex(2499 * 7 + 1)), h(hex(11 * 13 + 2499)))).toBe('Device 2499.11 [Model 11]');
    expect(names.deviceName(h(hex(1)), h(hex(0)))).toBe('Device 0.0 [Model 0]');
    expect(names.subsystemName(h(hex(1234 * 7 + 1)), h(hex(5 * 13 + 1234)), h('1458'), h(hex(6)))).toBe(
      'Gigabyte card 5',
    );
    expect(names.vendorName(h(hex(2)))).toBeNull();
  });
});

function hex(n: number): string {
  return (n & 0xffff).toString(16).padStart(4, '0');
}

describe('pci.ids indexed ahead of an event (the resident hook)', () => {
  it('is what load gives while the file reads the same, and a fresh read once it changed', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'qh-pciids-'));
    try {
      const file = join(dir, 'pci.ids');
      const text = readFileSync(FIXTURE, 'utf8');
      writeFileSync(file, text);
      PciIds.indexAhead([join(dir, 'missing'), file]);
      const first = PciIds.load([join(dir, 'missing'), file]);
      expect(PciIds.load([file])).toBe(first);
      expect(first.deviceName(h('10de'), h('2204'))).toBe('GA102 [GeForce RTX 3090]');
      writeFileSync(file, text.replace('GA102 [GeForce RTX 3090]', 'GA102 [renamed]'));
      const fresh = PciIds.load([file]);
      expect(fresh).not.toBe(first);
      expect(fresh.deviceName(h('10de'), h('2204'))).toBe('GA102 [renamed]');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
