import { describe, expect, it } from 'vitest';
import type { PciEntry, SriovEntry, UsbEntry } from '../../src/config/model.js';
import { parseConfig } from '../../src/config/parse.js';
import { resolvePci } from '../../src/match/pci.js';
import { resolveSriov } from '../../src/match/sriov.js';
import { resolveUsb } from '../../src/match/usb.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { host, pci, workstation } from '../support/inventory.js';

/** One entry from YAML, as the user writes it. */
function entry<T>(yaml: string): T {
  const r = parseConfig(
    `domains:\n  vm:\n    devices:\n      - ${yaml.trim().split('\n').join('\n        ')}\n`,
  );
  expect(r.errors).toEqual([]);
  return r.config!.domains.get('vm')!.devices[0] as T;
}

const addresses = (r: { ok: boolean; devices?: readonly { address: PciAddress }[] }) =>
  r.ok ? r.devices!.map((d) => d.address.toString()) : r;

describe('PCI matcher', () => {
  const inv = workstation();

  it('matches by address, ids, subsystem, class, driver and name; all criteria must hold', () => {
    expect(
      addresses(resolvePci(entry<PciEntry>('{ name: g, match: { address: "0000:01:00.0" } }'), inv)),
    ).toEqual(['0000:01:00.0']);
    expect(
      addresses(resolvePci(entry<PciEntry>('{ name: g, match: { vendor: "10de", device: "2204" } }'), inv)),
    ).toEqual(['0000:01:00.0']);
    expect(
      addresses(
        resolvePci(entry<PciEntry>('{ name: g, match: { subsystemVendor: "1458", class: "0403" } }'), inv),
      ),
    ).toEqual(['0000:01:00.1']);
    expect(
      addresses(resolvePci(entry<PciEntry>('{ name: g, match: { class: "0108", driver: nvme } }'), inv)),
    ).toEqual(['0000:02:00.0']);
    expect(addresses(resolvePci(entry<PciEntry>('{ name: g, match: { name: "rtx 3090" } }'), inv))).toEqual([
      '0000:01:00.0',
    ]);
    const none = resolvePci(
      entry<PciEntry>('{ name: g, match: { vendor: "10de", device: "2204", driver: vfio-pci } }'),
      inv,
    );
    expect(none.ok).toBe(false);
  });

  it('takes the first set that yields exactly the expected number', () => {
    const r = resolvePci(
      entry<PciEntry>(`
name: gpu
match:
  - { address: "0000:05:00.0", vendor: "10de", device: "2204" }
  - { vendor: "10de", device: "2204" }
  - { class: "0300" }`),
      inv,
    );
    expect(r.ok && r.tier).toBe(1);
    expect(addresses(r)).toEqual(['0000:01:00.0']);
  });

  it('stops at an ambiguous set and says how the candidates differ, instead of falling through', () => {
    const r = resolvePci(
      entry<PciEntry>(`{ name: gpu, match: [ { class: "03" }, { vendor: "10de", device: "2204" } ] }`),
      inv,
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toMatch(
      /^gpu: criteria set 1 .* matches 2 devices \(0000:00:02\.0, 0000:01:00\.0\), expected 1; tell them apart with/,
    );
  });

  it('tells twin GPUs apart only by address when everything else is equal', () => {
    const twins = host({
      pci: [
        pci({ address: '0000:01:00.0', ids: '10de:2204', subsystem: '1458:403b', driver: 'nvidia' }),
        pci({ address: '0000:02:00.0', ids: '10de:2204', subsystem: '1458:403b', driver: 'nvidia' }),
      ],
    });
    const r = resolvePci(entry<PciEntry>('{ name: gpu, match: { vendor: "10de", device: "2204" } }'), twins);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/tell them apart with address/);
    const byAddr = resolvePci(
      entry<PciEntry>(
        '{ name: gpu, match: [ { address: "0000:02:00.0" }, { vendor: "10de", device: "2204" } ] }',
      ),
      twins,
    );
    expect(addresses(byAddr)).toEqual(['0000:02:00.0']);
  });

  it('with count: 2 takes both twins', () => {
    const twins = host({
      pci: [
        pci({ address: '0000:01:00.0', ids: '10de:2204' }),
        pci({ address: '0000:02:00.0', ids: '10de:2204' }),
      ],
    });
    expect(
      addresses(
        resolvePci(
          entry<PciEntry>('{ name: gpus, count: 2, match: { vendor: "10de", device: "2204" } }'),
          twins,
        ),
      ),
    ).toEqual(['0000:01:00.0', '0000:02:00.0']);
  });

  it('adds the other functions of the slot with functions: all', () => {
    const r = resolvePci(
      entry<PciEntry>('{ name: gpu, functions: all, match: { vendor: "10de", device: "2204" } }'),
      inv,
    );
    expect(addresses(r)).toEqual(['0000:01:00.0', '0000:01:00.1']);
  });

  it('says plainly when nothing matches', () => {
    const r = resolvePci(
      entry<PciEntry>('{ name: gpu, match: [ { vendor: "1002" }, { class: "0c03" } ] }'),
      inv,
    );
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.reason).toBe(
        'gpu: no device matches any of its 2 criteria sets; run `qemu-hook devices` to see what the host has',
      );
  });
});

describe('USB matcher', () => {
  const inv = workstation();

  it('finds a device by ids, by serial and by port', () => {
    const wheel = resolveUsb(
      entry<UsbEntry>('{ name: wheel, type: usb, match: { vendor: "046d", product: "c24f" } }'),
      inv,
    );
    expect(wheel.ok && wheel.devices[0]!.port).toBe('3-2');
    const stick = resolveUsb(
      entry<UsbEntry>('{ name: s, type: usb, match: { vendor: "0781", serial: "BBB222" } }'),
      inv,
    );
    expect(stick.ok && stick.devices[0]!.port).toBe('3-4.1');
    const byPort = resolveUsb(entry<UsbEntry>('{ name: s, type: usb, match: { port: "3-3" } }'), inv);
    expect(byPort.ok && byPort.devices[0]!.serial).toBe('AAA111');
    const byName = resolveUsb(
      entry<UsbEntry>('{ name: w, type: usb, match: { name: "logitech .*wheel" } }'),
      inv,
    );
    expect(byName.ok && byName.devices[0]!.port).toBe('3-2');
  });

  it('calls identical sticks ambiguous and points at the serial', () => {
    const r = resolveUsb(
      entry<UsbEntry>('{ name: s, type: usb, match: { vendor: "0781", product: "5581" } }'),
      inv,
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/matches 2 devices .* tell them apart with serial/);
  });
});

describe('SR-IOV matcher', () => {
  const inv = workstation();
  const free = { isTaken: () => null, isBusy: () => false, preferred: [] };

  it('takes the first free VF of the PF named by netdev or address', () => {
    const r = resolveSriov(
      entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0 } }'),
      inv,
      free,
    );
    expect(addresses(r)).toEqual(['0000:03:02.0']);
    const byAddr = resolveSriov(
      entry<SriovEntry>('{ name: net, type: sriov, match: { pf: "0000:03:00.0" } }'),
      inv,
      free,
    );
    expect(addresses(byAddr)).toEqual(['0000:03:02.0']);
  });

  it('skips taken VFs, keeps the one the definition already uses, honours a fixed index', () => {
    const taken = {
      isTaken: (d: { address: PciAddress }) => (d.address.fn === 0 ? 'domain other' : null),
      isBusy: () => false,
      preferred: [],
    };
    expect(
      addresses(
        resolveSriov(entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0 } }'), inv, taken),
      ),
    ).toEqual(['0000:03:02.1']);
    const kept = { isTaken: () => null, isBusy: () => false, preferred: [PciAddress.parse('0000:03:02.1')] };
    const busyFirst = {
      isTaken: () => null,
      isBusy: (d: { address: PciAddress }) => d.address.fn === 0,
      preferred: [],
    };
    expect(
      addresses(
        resolveSriov(
          entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0 } }'),
          inv,
          busyFirst,
        ),
      ),
    ).toEqual(['0000:03:02.1']);
    expect(
      addresses(
        resolveSriov(entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0 } }'), inv, kept),
      ),
    ).toEqual(['0000:03:02.1']);
    const fixed = resolveSriov(
      entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0, vf: 0 } }'),
      inv,
      taken,
    );
    expect(fixed.ok).toBe(false);
    if (!fixed.ok)
      expect(fixed.reason).toMatch(/VF 0 of enp3s0f0 \(0000:03:02\.0\) is in use by domain other/);
  });

  it('refuses a PF that is not SR-IOV capable or has no VFs left', () => {
    const notPf = resolveSriov(
      entry<SriovEntry>('{ name: net, type: sriov, match: { pf: eno1 } }'),
      inv,
      free,
    );
    expect(!notPf.ok && notPf.reason).toMatch(/0000:00:1f\.6 \(eno1\) is not an SR-IOV physical function/);
    const full = resolveSriov(entry<SriovEntry>('{ name: net, type: sriov, match: { pf: enp3s0f0 } }'), inv, {
      isTaken: () => 'domain x',
      isBusy: () => false,
      preferred: [],
    });
    expect(!full.ok && full.reason).toMatch(/every VF of enp3s0f0 is in use/);
  });
});
