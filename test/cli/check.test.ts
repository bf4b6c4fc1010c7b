import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, HOSTS } from '../support/cli.js';

// `check` plans every configured domain the way the hook would: each case here is one the issue
// found `check` calling "valid" while the start was refused.

const PITFALLS = join(HOSTS, 'pitfalls');

interface CheckJson {
  ok: boolean;
  host: string[];
  domains: Array<{
    domain: string;
    ok: boolean;
    errors: string[];
    warnings: string[];
    configErrors: string[];
    devices: Array<{
      name: string;
      action: string;
      address: string | null;
      reason?: string;
      candidates?: string[];
    }>;
    definition: { missing?: boolean; changed: boolean; diff: string };
  }>;
}

function checkJson(host: string): { code: number | null; json: CheckJson } {
  const r = cli(['check', '--root', join(HOSTS, host), '--json']);
  return { code: r.code, json: JSON.parse(r.stdout) as CheckJson };
}

describe('check on the pitfalls host', () => {
  const { code, json } = checkJson('pitfalls');
  const domain = (name: string) => {
    const d = json.domains.find((x) => x.domain === name);
    if (!d) throw new Error(`no ${name} in check --json`);
    return d;
  };

  it('exits 2 (a domain entry is invalid) and plans every other domain anyway', () => {
    expect(code).toBe(2);
    expect(json.ok).toBe(false);
    expect(json.domains.map((d) => d.domain).sort()).toEqual(
      [
        'audio-apart',
        'console',
        'doubled',
        'no-pf',
        'not-defined',
        'root-nvme',
        'stale',
        'typo',
        'untagged',
        'usb-full',
        'usb-off',
        'wildcard',
      ].sort(),
    );
  });

  it('a misspelt key refuses only its domain, with "did you mean", the type key first', () => {
    expect(domain('typo').configErrors).toEqual([
      'domains.typo.devices[0]: unknown key "typ": did you mean "type"? (type decides which match keys the entry takes: pci, usb or sriov)',
      'domains.typo: unknown key "iommugroup": did you mean "iommuGroup"?',
    ]);
    expect(domain('typo').ok).toBe(false);
  });

  it('a GPU whose audio function shares its group: refused, told to set functions: all', () => {
    const d = domain('audio-apart');
    expect(d.ok).toBe(false);
    expect(d.devices[0]).toMatchObject({ name: 'gpu', action: 'refuse' });
    expect(d.errors[0]).toMatch(/another function of the same card; .*set functions: all on the gpu entry$/);
    expect(d.errors[0]).not.toMatch(/move the card/);
  });

  it("the console's boot VGA and the root NVMe: refused; no apply hint for a device refused anyway", () => {
    expect(domain('console').errors[0]).toMatch(/boot VGA device driving the console/);
    expect(domain('console').devices[0]!.action).toBe('refuse');
    const nvme = domain('root-nvme');
    expect(nvme.ok).toBe(false);
    expect(nvme.errors).toEqual([
      expect.stringMatching(/controller of the root filesystem's disk/),
      'disk: the definition has no entry for 0000:02:00.0',
    ]);
  });

  it('a missing SR-IOV PF, a stale and a missing definition: refused', () => {
    expect(domain('no-pf').errors).toEqual([expect.stringMatching(/^net: no PF enp9s0f0/)]);
    expect(domain('no-pf').devices[0]).toMatchObject({ name: 'net', action: 'refuse', address: null });
    expect(domain('stale').errors).toEqual([
      expect.stringMatching(/^gpu moved 0000:04:00\.0 → 0000:01:00\.0: the definition is stale/),
    ]);
    const missing = domain('not-defined');
    expect(missing.ok).toBe(false);
    expect(missing.definition.missing).toBe(true);
    expect(missing.errors[0]).toMatch(
      /^not-defined is not defined \(looked for .*not-defined\.xml\): define the VM first/,
    );
  });

  it('functions: all plus a separate audio entry: the audio function is planned once, and check says which entry to drop', () => {
    const d = domain('doubled');
    expect(d.ok).toBe(true);
    expect(d.devices.filter((x) => x.address === '0000:01:00.1')).toHaveLength(1);
    expect(d.warnings).toEqual([
      expect.stringMatching(/^audio: 0000:01:00\.1 is also planned by gpu .*drop the audio entry$/),
    ]);
    expect(d.definition.changed).toBe(false);
  });

  it('address "0000:01:00.*" with functions: all names the slot', () => {
    const d = domain('wildcard');
    expect(d.ok).toBe(true);
    expect(d.devices.map((x) => x.address)).toEqual(['0000:01:00.0', '0000:01:00.1']);
  });

  it('a USB entry for a definition without USB or without a free port: refused, naming the controller to add', () => {
    expect(domain('usb-off').errors).toEqual([
      'wheel: the definition has no entry for usb 046d:c24f',
      expect.stringMatching(/disables USB .*<controller type='usb' model='qemu-xhci'\/>/),
    ]);
    expect(domain('usb-full').errors[1]).toMatch(/no free USB port .*qemu-xhci/);
  });

  it('claims by several domains are warned about by check (and by check only)', () => {
    expect(json.domains.every((d) => d.warnings.every((w) => !/claimed by/.test(w)))).toBe(true);
    const text = cli(['check', '--root', PITFALLS]);
    expect(text.stdout).toMatch(/^warning: PCI 10de:2204 is claimed by audio-apart\/gpu and/m);
    const sim = cli(['--simulate', 'stale', 'prepare', '--root', PITFALLS]);
    expect(sim.stderr).toBe('');
  });
});

describe('check on hosts that cannot pass devices through', () => {
  it('no IOMMU: said first, with the kernel parameter for the CPU vendor; PCI starts refused', () => {
    const { code, json } = checkJson('no-iommu');
    expect(code).toBe(1);
    expect(json.host[0]).toMatch(
      /no active IOMMU.*add amd_iommu=on iommu=pt .*ls \/sys\/kernel\/iommu_groups/,
    );
    const win11 = json.domains.find((d) => d.domain === 'win11')!;
    expect(win11.ok).toBe(false);
    expect(win11.errors[0]).toMatch(/^this host has no active IOMMU/);
    expect(win11.devices.find((d) => d.name === 'gpu')).toMatchObject({ action: 'refuse' });
    // A USB-only domain does not need the IOMMU.
    expect(json.domains.find((d) => d.domain === 'backup')!.ok).toBe(true);
    const text = cli(['check', '--root', join(HOSTS, 'no-iommu')]);
    expect(text.stdout.split('\n')[0]).toMatch(/^host: this host has no active IOMMU/);
  });

  it('--simulate on a host without IOMMU: not ok', () => {
    const r = cli(['--simulate', 'win11', 'prepare', '--root', join(HOSTS, 'no-iommu'), '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false });
  });

  it('no pci.ids: says where names come from; a name: criterion is an error, not a silent non-match', () => {
    const { code, json } = checkJson('no-pci-ids');
    expect(code).toBe(1);
    expect(json.host[0]).toMatch(/no pci\.ids .*install pciutils .* or hwdata/);
    const byName = json.domains.find((d) => d.domain === 'by-name')!;
    expect(byName.errors[0]).toMatch(/^gpu: .*name: needs device names, and this host has no pci\.ids/);
    expect(json.domains.find((d) => d.domain === 'win11')!.ok).toBe(true);
  });
});

describe('--simulate tells the truth about what it did not check', () => {
  it('an entry that found no device: the definition is in step only with what was found', () => {
    const r = cli(['--simulate', 'no-pf', 'prepare', '--root', PITFALLS]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ {2}net +sriov +- +- +refuse +- +no PF enp9s0f0/m);
    expect(r.stdout).toMatch(/: in step with the devices found$/m);
    expect(r.stdout).not.toMatch(/in step with the hardware/);
  });

  it('a VM that is not defined reads as missing, not in step', () => {
    const r = cli(['--simulate', 'not-defined', 'prepare', '--root', PITFALLS]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^definition: not found \(looked for .*not-defined\.xml\)$/m);
  });
});
