import { describe, expect, it } from 'vitest';
import type { DomainConfig } from '../../src/config/model.js';
import { parseConfig } from '../../src/config/parse.js';
import { planStart } from '../../src/plan/prepare.js';
import { planRelease } from '../../src/plan/release.js';
import type { StateRecord } from '../../src/state/schema.js';
import { DomainXml } from '../../src/xml/domain-xml.js';
import { definition, pciHostdev } from '../support/domain.js';
import { host, pci, usb, workstation } from '../support/inventory.js';

function domainConfig(yaml: string): DomainConfig {
  const r = parseConfig(`domains:\n  win11:\n${yaml.replace(/^/gm, '    ')}\n`);
  expect(r.errors).toEqual([]);
  return r.config!.domains.get('win11')!;
}

const GPU = `devices:
  - name: gpu
    functions: all
    match: { vendor: "10de", device: "2204" }`;

const record = (r: Partial<StateRecord>): StateRecord => ({
  domain: 'other',
  address: '0000:01:00.0',
  originalDriver: 'nvidia',
  bootId: 'boot-1',
  phase: 'detached',
  since: '2026-11-25T10:00:00.000Z',
  entry: 'gpu',
  ...r,
});

describe('planStart', () => {
  it('detaches the GPU and its audio function, tagged in the definition: ok, nothing to change', () => {
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: workstation(),
      definition: definition('win11', [
        pciHostdev('0000:01:00.0', 'ua-qemuhook-gpu'),
        pciHostdev('0000:01:00.1', 'ua-qemuhook-gpu-1'),
      ]),
      records: [],
    });
    expect(plan.errors).toEqual([]);
    expect(plan.ok).toBe(true);
    expect(plan.devices.map((d) => [d.name, d.address, d.driver, d.action, d.iommuGroup])).toEqual([
      ['gpu', '0000:01:00.0', 'nvidia', 'detach', 13],
      ['gpu-1', '0000:01:00.1', 'snd_hda_intel', 'detach', 13],
    ]);
    expect(plan.definition).toMatchObject({ changed: false, diff: '', stale: false });
  });

  it('marks devices already on vfio-pci as "none" and USB as "none"', () => {
    const inv = workstation();
    const onVfio = {
      ...inv,
      pci: inv.pci.map((d) => (d.address.toString() === '0000:01:00.0' ? { ...d, driver: 'vfio-pci' } : d)),
    };
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(`devices:
  - { name: gpu, match: { address: "0000:01:00.0" } }
  - { name: wheel, type: usb, match: { vendor: "046d", product: "c24f" } }
iommuGroup: ignore`),
      inventory: onVfio,
      definition: null,
      records: [],
    });
    expect(plan.devices.map((d) => [d.name, d.action])).toEqual([
      ['gpu', 'none'],
      ['wheel', 'none'],
    ]);
  });

  it('proposes tagging untagged entries (adoption) without refusing', () => {
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: workstation(),
      definition: definition('win11', [pciHostdev('0000:01:00.0'), pciHostdev('0000:01:00.1')]),
      records: [],
    });
    expect(plan.ok).toBe(true);
    expect(plan.definition.changed).toBe(true);
    expect(plan.definition.diff).toContain("+      <alias name='ua-qemuhook-gpu'/>");
  });

  it('refuses a definition whose tagged entry moved, naming what now sits at the old address', () => {
    const inv = workstation();
    // The NVMe root disk is now at 01:00.0 and the GPU at 04:00.x.
    const moved = host({
      pci: [
        ...inv.pci.filter(
          (d) => !['0000:01:00.0', '0000:01:00.1', '0000:02:00.0'].includes(d.address.toString()),
        ),
        pci({
          address: '0000:01:00.0',
          ids: '144d:a808',
          class: '010802',
          driver: 'nvme',
          group: 14,
          name: ['Samsung', 'NVMe SSD Controller'],
        }),
        pci({
          address: '0000:04:00.0',
          ids: '10de:2204',
          subsystem: '1458:403b',
          driver: 'nvidia',
          group: 13,
        }),
        pci({
          address: '0000:04:00.1',
          ids: '10de:1aef',
          class: '040300',
          driver: 'snd_hda_intel',
          group: 13,
        }),
      ],
      protected: [['0000:01:00.0', 'root-disk']],
    });
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: moved,
      definition: definition('win11', [
        pciHostdev('0000:01:00.0', 'ua-qemuhook-gpu'),
        pciHostdev('0000:01:00.1', 'ua-qemuhook-gpu-1'),
      ]),
      records: [],
    });
    expect(plan.ok).toBe(false);
    expect(plan.devices[0]!.address).toBe('0000:04:00.0');
    expect(plan.errors).toContain(
      'gpu moved 0000:01:00.0 → 0000:04:00.0: the definition is stale; 0000:01:00.0 now holds Samsung NVMe SSD Controller',
    );
    expect(plan.errors.some((e) => /refusing to give 0000:01:00\.0 .* root filesystem/.test(e))).toBe(true);
    expect(plan.definition.stale).toBe(true);
    expect(plan.definition.diff).toContain(
      "-        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>",
    );
    expect(plan.definition.diff).toContain(
      "+        <address domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>",
    );
  });

  it('refuses a configured device the definition lacks (never applied)', () => {
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: workstation(),
      definition: definition('win11'),
      records: [],
    });
    expect(plan.ok).toBe(false);
    expect(plan.errors[0]).toBe('gpu: the definition has no entry for 0000:01:00.0; run qemu-hook apply');
    expect(plan.definition.changed).toBe(true);
  });

  describe('IOMMU group with a sibling on a host driver', () => {
    const inv = workstation();
    const shared = host({
      pci: [
        ...inv.pci,
        pci({ address: '0000:00:17.0', ids: '8086:7ae2', class: '010601', driver: 'ahci', group: 13 }),
      ],
    });
    const plan = (policy: string) =>
      planStart({
        domain: 'win11',
        config: domainConfig(`${GPU}\niommuGroup: ${policy}`),
        inventory: shared,
        definition: null,
        records: [],
      });

    it('require: refuses and names the sibling', () => {
      const p = plan('require');
      expect(p.ok).toBe(false);
      expect(p.errors).toEqual([
        expect.stringMatching(
          /^gpu: IOMMU group 13 also holds 0000:00:17\.0 .* on driver ahci; VFIO needs the whole group/,
        ),
      ]);
    });
    it('detach: adds the sibling to the plan', () => {
      const p = plan('detach');
      expect(p.ok).toBe(true);
      expect(p.devices.at(-1)).toMatchObject({
        address: '0000:00:17.0',
        action: 'detach',
        driver: 'ahci',
        originalDriver: 'ahci',
      });
    });
    it('ignore: neither', () => {
      const p = plan('ignore');
      expect(p.ok).toBe(true);
      expect(p.devices.map((d) => d.address)).not.toContain('0000:00:17.0');
    });
  });

  it('never takes the root disk controller, the default route NIC, or a boot VGA without force', () => {
    const p = planStart({
      domain: 'win11',
      config: domainConfig(`devices:
  - { name: disk, match: { address: "0000:02:00.0" } }
  - { name: nic, match: { address: "0000:00:1f.6" } }
  - { name: igpu, match: { address: "0000:00:02.0" } }
iommuGroup: ignore`),
      inventory: workstation(),
      definition: null,
      records: [],
    });
    expect(p.errors).toEqual([
      expect.stringMatching(/^disk: refusing to give 0000:02:00\.0 .*root filesystem/),
      expect.stringMatching(/^nic: refusing to give 0000:00:1f\.6 .*default network route/),
      expect.stringMatching(/^igpu: refusing to give 0000:00:02\.0 .*boot VGA.*force: true/),
    ]);
    const forced = planStart({
      domain: 'win11',
      config: domainConfig(
        'devices:\n  - { name: igpu, force: true, match: { address: "0000:00:02.0" } }\niommuGroup: ignore',
      ),
      inventory: workstation(),
      definition: null,
      records: [],
    });
    expect(forced.ok).toBe(true);
  });

  it('refuses an untagged hostdev in the definition that points at the root disk', () => {
    const p = planStart({
      domain: 'win11',
      config: domainConfig('devices: []'),
      inventory: workstation(),
      definition: definition('win11', [pciHostdev('0000:02:00.0')]),
      records: [],
    });
    expect(p.ok).toBe(false);
    expect(p.errors[0]).toMatch(/^definition: refusing to give 0000:02:00\.0/);
  });

  it('refuses a USB entry whose device sits behind a controller the VM takes whole', () => {
    const inv = workstation();
    const withCard = {
      ...inv,
      pci: [
        ...inv.pci,
        pci({ address: '0000:05:00.0', ids: '1b73:1100', class: '0c0330', driver: 'xhci_hcd', group: 18 }),
      ],
      usb: [
        usb('1-1', '046d:c24f', null, ['Logitech', 'Wheel'], '0000:05:00.0'),
        usb('3-3', '0781:5581', 'AAA111', ['SanDisk', 'Stick'], '0000:00:14.0'),
      ],
    };
    const config = (wheel: string) =>
      domainConfig(`devices:
  - name: card
    match: { vendor: "1b73", device: "1100" }
  - name: wheel
    type: usb
    match: ${wheel}`);
    const plan = planStart({
      domain: 'win11',
      config: config('{ vendor: "046d", product: "c24f" }'),
      inventory: withCard,
      definition: null,
      records: [],
    });
    expect(plan.ok).toBe(false);
    expect(plan.errors).toEqual([
      'wheel: 046d:c24f at USB port 1-1 is behind card (0000:05:00.0), which the VM takes whole, so it reaches the VM through that controller: remove the wheel entry, or plug the device into a port of another controller',
    ]);
    // A device on another controller's port is no concern of the card.
    const other = planStart({
      domain: 'win11',
      config: config('{ vendor: "0781", product: "5581" }'),
      inventory: withCard,
      definition: null,
      records: [],
    });
    expect(other.errors).toEqual([]);
  });

  it('refuses a device another domain holds in this boot, ignores records of an earlier boot', () => {
    const held = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: workstation(),
      definition: null,
      records: [record({})],
    });
    expect(held.errors).toContain(
      'gpu: 0000:01:00.0 is held by domain other (detached for it and not yet given back); stop other first',
    );
    const old = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: workstation(),
      definition: null,
      records: [record({ bootId: 'boot-0' })],
    });
    expect(old.ok).toBe(true);
    expect(old.warnings[0]).toMatch(/earlier boot/);
  });

  it('keeps the original driver from an earlier record of the same domain', () => {
    const inv = workstation();
    const onVfio = host({
      pci: inv.pci.map((d) => (d.address.toString() === '0000:01:00.0' ? { ...d, driver: 'vfio-pci' } : d)),
    });
    const p = planStart({
      domain: 'win11',
      config: domainConfig(
        'devices:\n  - { name: gpu, match: { address: "0000:01:00.0" } }\niommuGroup: ignore',
      ),
      inventory: onVfio,
      definition: null,
      records: [record({ domain: 'win11' })],
    });
    expect(p.devices[0]).toMatchObject({ action: 'none', originalDriver: 'nvidia' });
  });
});

describe('planRelease', () => {
  it('lists this domain’s records of this boot with their original drivers', () => {
    const inv = workstation();
    const p = planRelease('win11', inv, [
      record({ domain: 'win11', address: '0000:01:00.0', originalDriver: 'nvidia' }),
      record({
        domain: 'win11',
        address: '0000:01:00.1',
        originalDriver: 'snd_hda_intel',
        phase: 'detaching',
        entry: 'gpu-1',
      }),
      record({ domain: 'other', address: '0000:03:02.0', originalDriver: 'iavf' }),
      record({ domain: 'win11', address: '0000:02:00.0', bootId: 'boot-0' }),
    ]);
    expect(p.devices.map((d) => [d.address, d.action, d.originalDriver])).toEqual([
      ['0000:01:00.0', 'reattach', 'nvidia'],
      ['0000:01:00.1', 'reattach', 'snd_hda_intel'],
    ]);
    expect(p.devices[1]!.reason).toMatch(/crash/);
    expect(p.warnings).toHaveLength(1);
  });

  it('is empty when nothing was recorded (prepare refused or never ran)', () => {
    const p = planRelease('win11', workstation(), []);
    expect(p.ok).toBe(true);
    expect(p.devices).toEqual([]);
  });

  it('an address two entries plan is planned once, and the rewrite leaves one <hostdev> for it', () => {
    const config = domainConfig(`${GPU}
  - name: audio
    match: { address: "0000:01:00.1" }`);
    // The guides' way: an entry for the audio function on top of functions: all.
    const plan = planStart({
      domain: 'win11',
      config,
      inventory: workstation(),
      definition: definition('win11', [
        pciHostdev('0000:01:00.0', 'ua-qemuhook-gpu'),
        pciHostdev('0000:01:00.1', 'ua-qemuhook-audio'),
      ]),
      records: [],
    });
    expect(plan.devices.map((d) => [d.name, d.address])).toEqual([
      ['gpu', '0000:01:00.0'],
      ['gpu-1', '0000:01:00.1'],
    ]);
    expect(plan.warnings).toEqual([
      expect.stringMatching(/^audio: 0000:01:00\.1 is also planned by gpu .*drop the audio entry$/),
    ]);
    const after = DomainXml.parse(plan.definition.xml!).hostdevs();
    expect(after.filter((h) => h.pciAddress?.toString() === '0000:01:00.1').map((h) => h.alias)).toEqual([
      'ua-qemuhook-gpu-1',
    ]);
  });

  it('a refused plan says which device is refused and why; an ambiguous entry lists its candidates', () => {
    const inv = workstation();
    const twin = {
      ...inv,
      pci: [...inv.pci, pci({ address: '0000:09:00.0', ids: '10de:2204', driver: 'nvidia', group: 30 })],
    };
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(`devices:
  - name: gpu
    match: { vendor: "10de", device: "2204" }
  - name: disk
    match: { address: "0000:02:00.0" }`),
      inventory: twin,
      definition: null,
      records: [],
    });
    expect(plan.ok).toBe(false);
    const gpu = plan.devices.find((d) => d.name === 'gpu')!;
    expect(gpu).toMatchObject({
      action: 'refuse',
      address: null,
      candidates: ['0000:01:00.0', '0000:09:00.0'],
    });
    expect(plan.devices.find((d) => d.name === 'disk')).toMatchObject({ action: 'refuse' });
  });

  it('no active IOMMU: a plan with a PCI device is refused with the kernel parameter to add', () => {
    const inv = {
      ...workstation(),
      support: {
        iommu: false,
        cpuVendor: 'intel' as const,
        cmdline: 'ro quiet',
        pciIds: '/x/pci.ids',
        pciIdsSearched: [],
      },
    };
    const plan = planStart({
      domain: 'win11',
      config: domainConfig(GPU),
      inventory: inv,
      definition: null,
      records: [],
    });
    expect(plan.ok).toBe(false);
    expect(plan.errors[0]).toMatch(/no active IOMMU.*add intel_iommu=on iommu=pt/);
    expect(plan.devices.every((d) => d.action === 'refuse')).toBe(true);
  });
});
