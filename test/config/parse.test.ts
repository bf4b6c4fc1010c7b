import { describe, expect, it } from 'vitest';
import { configProblems, parseConfig } from '../../src/config/parse.js';
import { claimConflicts } from '../../src/config/rules.js';

const ok = (text: string) => {
  const r = parseConfig(text);
  expect(r.errors).toEqual([]);
  return r.config!;
};

describe('parseConfig', () => {
  it('reads the example from the issue, with defaults', () => {
    const c = ok(`
domains:
  win11:
    devices:
      - name: gpu
        match:
          - { address: "0000:01:00.0", vendor: "10de", device: "2204" }
          - { vendor: "0x10DE", device: "2204" }
          - { class: "0300", name: "RTX 3090" }
        functions: all
      - name: wheel
        type: usb
        match: { vendor: "046d", product: "c24f" }
      - name: net
        type: sriov
        match: { pf: "enp3s0f0" }
        mac: "52:54:00:12:34:56"
        vlan: 42
`);
    const d = c.domains.get('win11')!;
    expect(d.iommuGroup).toBe('require');
    expect(d.onAddressChange).toBe('redefine');
    expect(c.libvirtUri).toBe('qemu:///system');
    expect(c.stateFile).toBe('/var/lib/qemu-hook/state.json');
    const gpu = d.devices[0]!;
    expect(gpu.type).toBe('pci');
    if (gpu.type !== 'pci') throw new Error('type');
    expect(gpu.functions).toBe('all');
    expect(gpu.tiers).toHaveLength(3);
    expect(gpu.tiers[0]!.address!.toString()).toBe('0000:01:00.0');
    expect(gpu.tiers[1]!.vendor).toBe('10de');
    expect(gpu.tiers[2]!.class).toBe('0300');
    expect(gpu.tiers[2]!.name!.test('NVIDIA Corporation GA102 [GeForce RTX 3090]')).toBe(true);
    const net = d.devices[2]!;
    expect(net.type === 'sriov' && net.mac).toBe('52:54:00:12:34:56');
    expect(net.type === 'sriov' && net.vlan).toBe(42);
  });

  it('reads unquoted hex as written, not as the number YAML makes of it', () => {
    const c = ok(`
domains:
  vm:
    devices:
      - name: gpu
        match: { class: 0300, vendor: 0x10de, device: 2204 }
`);
    const gpu = c.domains.get('vm')!.devices[0]!;
    if (gpu.type !== 'pci') throw new Error('type');
    expect(gpu.tiers[0]).toMatchObject({ class: '0300', vendor: '10de', device: '2204' });
  });

  it('keeps every number-like id as written (floats too), and other numbers as numbers', () => {
    const c = ok(`
domains:
  vm:
    devices:
      - name: dev
        count: 2
        match: { vendor: 8086, device: 1e10, subsystemVendor: 0x1458 }
      - name: net
        type: sriov
        match: { pf: enp3s0f0, vf: 0x1 }
        vlan: 42
`);
    const [dev, net] = c.domains.get('vm')!.devices;
    expect(dev).toMatchObject({
      count: 2,
      tiers: [{ vendor: '8086', device: '1e10', subsystemVendor: '1458' }],
    });
    expect(net).toMatchObject({ type: 'sriov', vlan: 42, tiers: [{ vf: 1 }] });
  });

  it('refuses a quoted number where a number belongs, naming the key', () => {
    const r = parseConfig(
      'domains:\n  vm:\n    devices:\n      - { name: x, count: "2", match: { vendor: "10de" } }\n',
    );
    expect(r.config?.domains.has('vm')).toBe(false);
    expect(r.config?.invalidDomains.get('vm')).toEqual([
      'domains.vm.devices[0].count: Invalid input: expected number, received string: write it without quotes',
    ]);
  });

  it('refuses a key given twice, with its line and column', () => {
    const r = parseConfig('domains:\n  vm:\n    devices: []\n  vm:\n    devices: []\n');
    expect(r.config).toBeNull();
    expect(r.errors).toEqual(['YAML: line 4, column 3: duplicated mapping key']);
  });

  it('reads a "__proto__" key as a key (an unknown one), never as a prototype', () => {
    const r = parseConfig('__proto__: { domains: {} }\n');
    expect(r.config).toBeNull();
    expect(r.errors.join('\n')).toMatch(/unknown key "__proto__"/);
    expect(({} as Record<string, unknown>)['domains']).toBeUndefined();
  });

  it('reports every problem at once, each with its path and a fix', () => {
    const entries = `
domains:
  win11:
    devices:
      - name: gpu
        match: { vendor: "zz", device: "2204" }
      - name: audio
        match: [ { address: "01:00" }, { class: "030" } ]
      - name: gpu
        match: { name: "(" }
`;
    const r = parseConfig(`${entries}    onAddressChange: redefin\n`);
    expect(r.config?.domains.size).toBe(0);
    expect(configProblems(r).join('\n')).toMatch(/onAddressChange/);
    // Schema errors come first; once the shape is right, value errors are all listed together.
    const r2 = parseConfig(entries);
    expect(configProblems(r2)).toEqual([
      expect.stringMatching(/^domains\.win11\.devices\[0\]\.match\.vendor: "zz" is not a 16-bit hex id/),
      expect.stringMatching(
        /^domains\.win11\.devices\[1\]\.match\[0\]\.address: "01:00" is not a PCI address/,
      ),
      expect.stringMatching(/^domains\.win11\.devices\[1\]\.match\[1\]\.class: "030" is not a PCI class/),
      expect.stringMatching(/^domains\.win11\.devices\[2\]\.match\.name: not a valid regular expression/),
      expect.stringMatching(/^domains\.win11\.devices\[2\]\.name: "gpu" is already used by devices\[0\]/),
    ]);
  });

  it('names unknown keys and bad enum values', () => {
    const r = parseConfig(`
domains:
  vm:
    devices:
      - name: x
        match: { vendor: "10de", clas: "03" }
    iommuGroup: sometimes
`);
    const all = configProblems(r);
    expect(all.some((e) => e.startsWith('domains.vm.iommuGroup:'))).toBe(true);
    expect(all).toContain('domains.vm.devices[0].match: unknown key "clas": did you mean "class"?');
  });

  it('rejects an empty criteria set, which would match everything', () => {
    const r = parseConfig('domains:\n  vm:\n    devices:\n      - { name: x, match: {} }\n');
    expect(configProblems(r)).toEqual([
      expect.stringMatching(/^domains\.vm\.devices\[0\]\.match: empty criteria set/),
    ]);
  });

  it('warns, without failing, when two domains claim one device (for check, which looks at all)', () => {
    const r = parseConfig(`
domains:
  a: { devices: [ { name: gpu, match: { address: "0000:01:00.0" } } ] }
  b: { devices: [ { name: card, match: { address: "01:00.0" } } ] }
`);
    expect(r.errors).toEqual([]);
    // A start of a, or --simulate a, hears nothing about b: only check warns.
    expect(r.warnings).toEqual([]);
    expect(claimConflicts(r.config!)).toEqual([
      expect.stringMatching(/0000:01:00\.0 is claimed by a\/gpu and b\/card/),
    ]);
  });

  it('a problem inside one domain makes only that domain invalid; one outside any domain, the whole file', () => {
    const r = parseConfig(`
domains:
  win11: { devices: [ { name: gpu, match: { vendor: "10de" } } ] }
  backup:
    devcie: [ { name: stick, type: usb, match: { vendor: "0781" } } ]
`);
    expect(r.errors).toEqual([]);
    expect([...r.config!.domains.keys()]).toEqual(['win11']);
    expect(r.config!.invalidDomains.get('backup')).toEqual([
      'domains.backup: unknown key "devcie": did you mean "devices"?',
    ]);
    const top = parseConfig('libvrit: { uri: "qemu:///system" }\ndomains:\n  win11: { devices: [] }\n');
    expect(top.config).toBeNull();
    expect(top.errors).toEqual(['(top level): unknown key "libvrit": did you mean "libvirt"?']);
  });

  it('did you mean: case slips and swapped letters; a misspelt type is named, not the keys it decides', () => {
    const r = parseConfig(`
domains:
  vm:
    iommugroup: detach
    devices:
      - name: wheel
        typ: usb
        match: { vendor: "046d", product: "c24f" }
`);
    expect(r.config!.invalidDomains.get('vm')).toEqual([
      'domains.vm.devices[0]: unknown key "typ": did you mean "type"? (type decides which match keys the entry takes: pci, usb or sriov)',
      'domains.vm: unknown key "iommugroup": did you mean "iommuGroup"?',
    ]);
    // Nothing about "product", which only looks wrong because the type was not read.
    expect(configProblems(r).join('\n')).not.toMatch(/product/);
    const far = parseConfig('domains:\n  vm: { devices: [], colour: blue }\n');
    expect(far.config!.invalidDomains.get('vm')![0]).toMatch(
      /^domains\.vm: unknown key "colour": remove or correct it \(valid here: devices, iommuGroup, onAddressChange, handover; see the config reference in \/usr\/local\/share\/doc\/qemu-hook\/README\.md\)$/,
    );
  });

  it('gives YAML syntax errors one line each', () => {
    const r = parseConfig('domains:\n  vm: [\n');
    expect(r.config).toBeNull();
    expect(r.errors[0]).toMatch(/^YAML: /);
    expect(r.errors[0]).not.toContain('\n');
  });

  it('accepts an empty file as no domains', () => {
    expect(ok('').domains.size).toBe(0);
  });

  it('rejects a sriov entry with a bad MAC', () => {
    const r = parseConfig(
      'domains:\n  vm:\n    devices:\n      - { name: n, type: sriov, match: { pf: eth0 }, mac: "zz" }\n',
    );
    expect(configProblems(r)).toEqual([
      expect.stringMatching(/^domains\.vm\.devices\[0\]\.mac: "zz" is not a MAC/),
    ]);
  });
});
