import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FixtureDriverControl } from '../../src/host/fixture-driver-control.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { cli, hostCopies } from '../support/cli.js';

const copy = hostCopies();

/** A host left as a crashed prepare leaves it: devices on vfio-pci, records in the state file. */
async function crashedHost(
  records: { domain: string; address: string; originalDriver: string | null; phase?: string }[],
) {
  const root = copy('workstation');
  const control = new FixtureDriverControl(root);
  for (const r of records) await control.detach(PciAddress.parse(r.address));
  const bootId = readFileSync(join(root, 'proc/sys/kernel/random/boot_id'), 'utf8').trim();
  writeFileSync(
    join(root, 'var/lib/qemu-hook/state.json'),
    JSON.stringify({
      version: 1,
      records: records.map((r) => ({
        entry: 'gpu',
        bootId,
        since: '2026-11-25T10:00:00.000Z',
        phase: 'detached',
        ...r,
      })),
    }),
  );
  return root;
}
const driverOf = (root: string, address: string) => {
  try {
    return readlinkSync(join(root, 'sys/bus/pci/devices', address, 'driver'))
      .split('/')
      .pop();
  } catch {
    return null;
  }
};

describe('qemu-hook recover --root', () => {
  it('gives every recorded device of a stopped domain back to its original driver and empties the state', async () => {
    const root = await crashedHost([
      { domain: 'win11', address: '0000:01:00.0', originalDriver: 'nvidia', phase: 'detaching' },
      { domain: 'win11', address: '0000:01:00.1', originalDriver: 'snd_hda_intel' },
    ]);
    expect(driverOf(root, '0000:01:00.0')).toBe('vfio-pci');
    const dry = cli(['recover', '--root', root, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/would give back: 0000:01:00\.0 → nvidia/);
    expect(driverOf(root, '0000:01:00.0')).toBe('vfio-pci');
    const r = cli(['recover', '--root', root]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/given back: 0000:01:00\.0 → nvidia/);
    expect(driverOf(root, '0000:01:00.0')).toBe('nvidia');
    expect(driverOf(root, '0000:01:00.1')).toBe('snd_hda_intel');
    expect(JSON.parse(readFileSync(join(root, 'var/lib/qemu-hook/state.json'), 'utf8')).records).toEqual([]);
    expect(cli(['status', '--root', root]).stdout).toMatch(/no devices held/);
  });

  it('leaves the devices of a running domain alone, and --domain limits the work', async () => {
    const root = await crashedHost([
      { domain: 'win11', address: '0000:01:00.0', originalDriver: 'nvidia' },
      { domain: 'router', address: '0000:05:00.0', originalDriver: 'xhci_hcd' },
    ]);
    mkdirSync(join(root, 'run/libvirt/qemu'), { recursive: true });
    writeFileSync(join(root, 'run/libvirt/qemu/win11.xml'), '<domstatus/>');
    const r = cli(['recover', '--root', root]);
    expect(r.stdout).toMatch(/win11 is running: its devices stay with it/);
    expect(driverOf(root, '0000:01:00.0')).toBe('vfio-pci');
    expect(driverOf(root, '0000:05:00.0')).toBe('xhci_hcd');
    const status = JSON.parse(cli(['status', '--root', root, '--json']).stdout);
    expect(status.records.map((x: { domain: string }) => x.domain)).toEqual(['win11']);
    expect(cli(['recover', '--root', root, '--domain', 'nobody']).stdout).toMatch(
      /nothing recorded for nobody/,
    );
  });
});
