import { describe, expect, it } from 'vitest';
import { InvariantError, XmlError } from '../../src/model/errors.js';
import { hexId } from '../../src/model/ids.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { DomainXml } from '../../src/xml/domain-xml.js';
import { type DesiredHostdev, rewriteHostdevs } from '../../src/xml/rewrite.js';
import { loadCase } from './fixture-cases.js';

const pci = (alias: string, address: string): DesiredHostdev => ({
  alias: `ua-qemuhook-${alias}`,
  kind: 'pci',
  address: PciAddress.parse(address),
});
const usb = (alias: string, vendor: string, product: string, at?: { bus: number; device: number }) =>
  ({
    alias: `ua-qemuhook-${alias}`,
    kind: 'usb',
    vendor: hexId(vendor),
    product: hexId(product),
    ...at,
  }) as const;

const domain = (devices: string) =>
  `<domain type='kvm'>\n  <name>t</name>\n  <devices>\n${devices}\n  </devices>\n</domain>\n`;

const tagged = (
  alias: string,
  bus: string,
  inside = '',
) => `    <hostdev mode='subsystem' type='pci' managed='no'>
      <source>
        <address domain='0x0000' bus='${bus}' slot='0x00' function='0x0'/>
      </source>${inside}
      <alias name='ua-qemuhook-${alias}'/>
    </hostdev>`;

describe('rewriteHostdevs keeps what it does not own', () => {
  it('changes exactly one attribute value in an odd definition and no other byte', () => {
    const c = loadCase('odd-definition');
    const r = rewriteHostdevs(c.input, c.desired, c.options);
    const before = c.input.split('\n');
    const after = r.xml.split('\n');
    expect(after).toHaveLength(before.length);
    const differing = before.flatMap((line, i) => (line === after[i] ? [] : [i]));
    expect(differing).toHaveLength(1);
    expect(before[differing[0]!]).toContain('bus = "0x01"');
    expect(r.xml).toBe(c.input.replace('bus = "0x01"', 'bus = "0x02"'));
  });

  it('keeps unknown attributes, children and comments inside an updated entry', () => {
    const input = domain(`    <hostdev mode='subsystem' type='pci' managed='foo' x-extra="1">
      <!-- why this GPU -->
      <source writeFiltering='no'>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0' future='yes'/>
      </source>
      <driver name='vfio'/>
      <boot order='1'/>
      <alias name='ua-qemuhook-gpu'/>
      <rom file='/x.rom'/>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </hostdev>`);
    const r = rewriteHostdevs(input, [pci('gpu', '0000:0a:1f.7')]);
    expect(r.xml).toBe(
      input.replace(
        "bus='0x01' slot='0x00' function='0x0' future='yes'",
        "bus='0x0a' slot='0x1f' function='0x7' future='yes'",
      ),
    );
    expect(r.actions).toEqual(['gpu: 0000:01:00.0 → 0000:0a:1f.7']);
  });

  it('writes nothing when values differ only in spelling (decimal, upper case, missing domain)', () => {
    const input = domain(`    <hostdev mode='subsystem' type='pci'>
      <source><address bus='1' slot='0' function='0'/></source>
      <alias name='ua-qemuhook-gpu'/>
    </hostdev>
    <hostdev mode='subsystem' type='usb'>
      <source><vendor id='0x046D'/><product id='49743'/></source>
      <alias name='ua-qemuhook-wheel'/>
    </hostdev>`);
    const r = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0'), usb('wheel', '046d', 'c24f')]);
    expect(r).toEqual({ xml: input, changed: false, actions: [] });
  });

  it('removes a tagged entry with its line, leaving no blank line', () => {
    const input = domain(`${tagged('gpu', '0x01')}\n${tagged('old', '0x05')}\n    <video/>`);
    const r = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0')]);
    expect(r.xml).toBe(domain(`${tagged('gpu', '0x01')}\n    <video/>`));
    expect(r.actions).toEqual(['removed old: pci 0000:05:00.0']);
  });

  it('keeps a tagged entry the caller says is not its to remove, and entries of other tools', () => {
    const other = tagged('x', '0x07').replace('ua-qemuhook-x', 'ua-other-x');
    const input = domain(`${tagged('unresolved', '0x05')}\n${other}`);
    const kept = rewriteHostdevs(input, [], { managedEntries: (a) => a !== 'ua-qemuhook-unresolved' });
    expect(kept.changed).toBe(false);
    const dropped = rewriteHostdevs(input, []);
    expect(dropped.xml).toBe(domain(other));
  });
});

describe('rewriteHostdevs adopts, adds and replaces', () => {
  it('adopts an untagged entry once: one alias, replacing libvirt’s generated one', () => {
    const input = domain(`    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <alias name='hostdev0'/>
    </hostdev>`);
    const r = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0')]);
    // managed='yes' would have libvirt detach and reattach it too, behind the hook's back.
    expect(r.xml).toBe(input.replace('hostdev0', 'ua-qemuhook-gpu').replace("managed='yes'", "managed='no'"));
    expect(r.xml.match(/<alias /g)).toHaveLength(1);
  });

  it("keeps a user's own alias on an adopted entry unless asked to rename it, and says which", () => {
    const input = domain(`    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <alias name='ua-myGPU'/>
    </hostdev>`);
    const kept = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0')]);
    expect(kept.xml).toBe(input.replace("managed='yes'", "managed='no'"));
    expect(kept.actions).toEqual([
      "adopted gpu: pci 0000:01:00.0 (keeps your alias 'ua-myGPU'); managed='yes' → 'no': qemu-hook detaches it and gives it back",
    ]);
    // Kept, it stays adopted: a second run changes nothing and says nothing.
    expect(rewriteHostdevs(kept.xml, [pci('gpu', '0000:01:00.0')])).toMatchObject({
      changed: false,
      actions: [],
    });
    const renamed = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0')], { renameUserAliases: true });
    expect(renamed.xml).toBe(
      input.replace("managed='yes'", "managed='no'").replace('ua-myGPU', 'ua-qemuhook-gpu'),
    );
    expect(renamed.actions[0]).toMatch(/alias 'ua-myGPU' renamed to 'ua-qemuhook-gpu'/);
  });

  it('puts an adopted alias where libvirt does: before <rom> and the guest <address>', () => {
    const input = domain(`    <hostdev mode='subsystem' type='pci'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <boot order='1'/>
      <rom bar='off'/>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </hostdev>`);
    const r = rewriteHostdevs(input, [pci('gpu', '0000:01:00.0')]);
    expect(r.xml).toBe(
      input.replace("<boot order='1'/>", "<boot order='1'/>\n      <alias name='ua-qemuhook-gpu'/>"),
    );
  });

  it('among identical untagged USB devices adopts the one on the desired bus/device', () => {
    const entry = (bus: number) =>
      `    <hostdev mode='subsystem' type='usb'><source><vendor id='0x045e'/><product id='0x028e'/><address bus='${bus}' device='2'/></source></hostdev>`;
    const input = domain(`${entry(1)}\n${entry(3)}`);
    const r = rewriteHostdevs(input, [usb('pad', '045e', '028e', { bus: 3, device: 2 })]);
    const entries = DomainXml.parse(r.xml).hostdevs();
    expect(entries.map((e) => [e.usb?.bus, e.alias])).toEqual([
      [1, null],
      [3, 'ua-qemuhook-pad'],
    ]);
  });

  it('replaces a tagged entry whose device changed type, and drops a duplicate tag', () => {
    const input = domain(`${tagged('wheel', '0x0a')}\n${tagged('gpu', '0x01')}\n${tagged('gpu', '0x01')}`);
    const r = rewriteHostdevs(input, [usb('wheel', '046d', 'c24f'), pci('gpu', '0000:01:00.0')]);
    const entries = DomainXml.parse(r.xml).hostdevs();
    expect(entries.map((e) => [e.alias, e.kind])).toEqual([
      ['ua-qemuhook-gpu', 'pci'],
      ['ua-qemuhook-wheel', 'usb'],
    ]);
    expect(r.actions).toEqual([
      'added wheel: usb 046d:c24f',
      'removed wheel: pci 0000:0a:00.0 (now usb)',
      'removed gpu: pci 0000:01:00.0 (duplicate)',
    ]);
  });

  it('fills in a missing or self-closing <source>', () => {
    const input = domain(`    <hostdev mode='subsystem' type='usb'>
      <source/>
      <alias name='ua-qemuhook-wheel'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci'>
      <alias name='ua-qemuhook-gpu'/>
    </hostdev>`);
    const desired = [usb('wheel', '046d', 'c24f', { bus: 1, device: 3 }), pci('gpu', '0000:01:00.0')];
    const r = rewriteHostdevs(input, desired);
    expect(r.xml).toContain(`      <source>
        <vendor id='0x046d'/>
        <product id='0xc24f'/>
        <address bus='1' device='3'/>
      </source>`);
    expect(r.xml).toContain(`    <hostdev mode='subsystem' type='pci'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <alias name='ua-qemuhook-gpu'/>`);
    expect(rewriteHostdevs(r.xml, desired).changed).toBe(false);
  });

  it('adds SR-IOV mac and vlan to an interface that had none, and keeps a MAC it was not given', () => {
    const input = domain(`    <interface type='hostdev'>
      <mac address='52:54:00:00:00:01'/>
      <source>
        <address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
      </source>
      <alias name='ua-qemuhook-net'/>
    </interface>`);
    const r = rewriteHostdevs(input, [
      { alias: 'ua-qemuhook-net', kind: 'sriov', address: PciAddress.parse('0000:03:10.0'), vlan: 9 },
    ]);
    expect(r.xml).toBe(
      input.replace('</source>\n', "</source>\n      <vlan>\n        <tag id='9'/>\n      </vlan>\n"),
    );
  });
});

describe('rewriteHostdevs refuses', () => {
  it('malformed XML with an XmlError', () => {
    expect(() => rewriteHostdevs('<domain><name>x</name>', [])).toThrow(XmlError);
  });

  it('a desired list with a repeated alias or a foreign alias, as a bug of the caller', () => {
    const input = domain('');
    expect(() => rewriteHostdevs(input, [pci('gpu', '01:00.0'), pci('gpu', '02:00.0')])).toThrow(
      InvariantError,
    );
    expect(() => rewriteHostdevs(input, [{ ...pci('gpu', '01:00.0'), alias: 'hostdev0' }])).toThrow(
      InvariantError,
    );
  });
});
