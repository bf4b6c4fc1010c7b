import { describe, expect, it } from 'vitest';
import { XmlError } from '../../src/model/errors.js';
import { aliasFor, DomainXml, OUR_ALIAS_PREFIX, parseOurAlias } from '../../src/xml/domain-xml.js';
import { loadCase } from './fixture-cases.js';

const domain = (devices: string, extra = '') =>
  `<domain type='kvm'>\n  <name>win11</name>${extra}\n  <devices>\n${devices}\n  </devices>\n</domain>\n`;

function parseError(text: string): string {
  try {
    DomainXml.parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(XmlError);
    return (err as Error).message;
  }
  throw new Error('parsed');
}

describe('aliases', () => {
  it('spells the first device without a suffix and the others with -N', () => {
    expect(aliasFor('gpu', 0)).toBe(`${OUR_ALIAS_PREFIX}gpu`);
    expect(aliasFor('gpu', 2)).toBe('ua-qemuhook-gpu-2');
  });

  it('reads back what aliasFor writes, also for entry names with dashes and digits', () => {
    for (const [entry, index] of [
      ['gpu', 0],
      ['gpu', 1],
      ['gpu', 12],
      ['old-controller', 0],
      ['old-controller', 3],
      ['nic-0', 0],
      ['nic-01', 0],
      ['nic-2', 4],
    ] as const) {
      expect(parseOurAlias(aliasFor(entry, index))).toEqual({ entry, index });
    }
  });

  it('is not ours without the prefix or without an entry name', () => {
    expect(parseOurAlias('hostdev0')).toBeNull();
    expect(parseOurAlias('ua-other-gpu')).toBeNull();
    expect(parseOurAlias('ua-qemuhook-')).toBeNull();
  });
});

describe('DomainXml.parse', () => {
  it('reads name and uuid', () => {
    const d = DomainXml.parse(domain('', '\n  <uuid> 5f1c2a9e-3b7d-4c1e-9a8f-0d2e4b6c8a10 </uuid>'));
    expect(d.name).toBe('win11');
    expect(d.uuid).toBe('5f1c2a9e-3b7d-4c1e-9a8f-0d2e4b6c8a10');
    expect(DomainXml.parse(domain('')).uuid).toBeNull();
  });

  it('keeps the original text', () => {
    const text = loadCase('odd-definition').input;
    expect(DomainXml.parse(text).text()).toBe(text);
  });

  it('names line and column of malformed XML in one line', () => {
    const message = parseError(
      '<domain>\n  <name>x</name>\n  <devices>\n    <hostdev>\n  </devices>\n</domain>',
    );
    expect(message).toMatch(/^malformed XML at line \d+, column \d+: .*mismatch/);
    expect(message).not.toContain('\n');
  });

  it('rejects unquoted attributes, undefined entities, content after the root and empty input', () => {
    expect(parseError('<domain><name a=1>x</name></domain>')).toMatch(/^malformed XML/);
    expect(parseError('<domain><name>&nbsp;</name></domain>')).toMatch(/entity/);
    expect(parseError('<domain><name>x</name></domain><domain/>')).toMatch(/^malformed XML/);
    expect(parseError('')).toMatch(/^malformed XML/);
  });

  it('refuses a root that is not <domain>', () => {
    expect(parseError('<network><name>default</name></network>')).toBe(
      'not a domain definition: the root element is <network>, not <domain>',
    );
  });

  it('refuses a domain without a name', () => {
    expect(parseError('<domain><devices/></domain>')).toMatch(/no <name>/);
  });

  it('accepts a byte-order mark and CRLF line ends', () => {
    const text = `\uFEFF${domain(
      "    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='2' slot='0' function='0'/></source></hostdev>",
    ).replace(/\n/g, '\r\n')}`;
    const d = DomainXml.parse(text);
    expect(d.hostdevs()[0]?.pciAddress?.toString()).toBe('0000:02:00.0');
  });
});

describe('hostdevs()', () => {
  const text = domain(`    <hostdev mode='subsystem' type='pci' managed='foo'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/>
      </source>
      <alias name='ua-qemuhook-gpu-1'/>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00'   function='0x0'/>
    </hostdev>
    <interface type='network'><source network='default'/></interface>
    <hostdev mode='subsystem' type='usb'>
      <source><vendor id='0x046D'/><product id='49743'/><address bus='3' device='0x0a'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/></source></hostdev>
    <hostdev mode='capabilities' type='storage'><source><block>/dev/sdf1</block></source></hostdev>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:AB:cd:ef'/>
      <source><address type='pci' domain='0' bus='3' slot='16' function='2'/></source>
      <vlan><tag id='42'/></vlan>
      <alias name='hostdev1'/>
    </interface>
    <hostdev type='pci'><source><address bus='0x07' slot='0x00' function='0x0'/></source></hostdev>
    <hostdev mode='subsystem' type='pci'><source><address bus='0x07' slot='0x40' function='0x0'/></source></hostdev>`);
  const entries = DomainXml.parse(text).hostdevs();

  it('lists PCI and USB subsystem hostdevs and hostdev interfaces, in document order', () => {
    expect(entries.map((e) => e.kind)).toEqual(['pci', 'usb', 'sriov', 'pci', 'pci']);
  });

  it('reads a PCI entry: host address, our name, raw managed, guest address as written', () => {
    const e = entries[0]!;
    expect(e.pciAddress?.toString()).toBe('0000:01:00.1');
    expect(e.alias).toBe('ua-qemuhook-gpu-1');
    expect(e.ourName).toEqual({ entry: 'gpu', index: 1 });
    expect(e.managed).toBe('foo');
    expect(e.guestAddress).toBe(
      "<address type='pci' domain='0x0000' bus='0x06' slot='0x00'   function='0x0'/>",
    );
    expect(e.usb).toBeNull();
  });

  it('reads USB ids and address whatever base they are written in, as libvirt does', () => {
    const e = entries[1]!;
    expect(e.usb).toEqual({ vendor: '046d', product: 'c24f', bus: 3, device: 10 });
    expect(e.alias).toBeNull();
    expect(e.ourName).toBeNull();
    expect(e.managed).toBeNull();
    expect(e.guestAddress).toBeNull();
  });

  it('reads an SR-IOV interface: VF address, mac, vlan, foreign alias', () => {
    const e = entries[2]!;
    expect(e.pciAddress?.toString()).toBe('0000:03:10.2');
    expect(e.mac).toBe('52:54:00:AB:cd:ef');
    expect(e.vlan).toBe(42);
    expect(e.alias).toBe('hostdev1');
    expect(e.ourName).toBeNull();
  });

  it('takes a missing mode as subsystem and a missing domain as 0; an impossible slot as no address', () => {
    expect(entries[3]!.pciAddress?.toString()).toBe('0000:07:00.0');
    expect(entries[4]!.pciAddress).toBeNull();
  });

  it('does not take namespaced metadata or comments for devices', () => {
    const odd = DomainXml.parse(loadCase('odd-definition').input).hostdevs();
    expect(odd.map((e) => e.alias)).toEqual(['ua-qemuhook-gpu', 'ua-qemuhook-wheel', null]);
  });
});
