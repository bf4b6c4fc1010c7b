// Attack: release and recover trusted the state file blindly. A record is a claim; the host decides.
import { readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { driverOf, hookLog, record, runHook, statePath, writeState } from '../../support/attack.js';
import { cli, hostCopies } from '../../support/cli.js';

const copy = hostCopies();
const ROOT_NVME = '0000:02:00.0';
const ROUTE_NIC = '0000:00:1f.6';
const USB_CARD = '0000:05:00.0';
const GPU = '0000:01:00.0';
const SRIOV_PF = '0000:03:00.0';
const records = (root: string) =>
  JSON.parse(readFileSync(statePath(root), 'utf8')).records as { address: string }[];

describe('release re-checks each record against the host', () => {
  it('a forged record does not unbind the root disk NVMe', () => {
    const root = copy('workstation');
    writeState(root, [record('win11', ROOT_NVME, null)]);
    expect(runHook(root, 'win11', 'release', 'end').code).toBe(0);
    expect(driverOf(root, ROOT_NVME)).toBe('nvme');
    expect(records(root).map((r) => r.address)).toEqual([ROOT_NVME]); // kept, for a human to look at
    expect(readFileSync(hookLog(root), 'utf8')).toMatch(
      /0000:02:00\.0 left alone: it is the controller of the root filesystem/,
    );
  });

  it('a forged record does not bind the default-route NIC to vfio-pci (recover neither)', () => {
    const root = copy('workstation');
    writeState(root, [record('win11', ROUTE_NIC, 'vfio-pci')]);
    runHook(root, 'win11', 'release', 'end');
    expect(driverOf(root, ROUTE_NIC)).toBe('e1000e');
    const dry = cli(['recover', '--dry-run', '--root', root]);
    expect(dry.stderr).toMatch(
      /not given back: 0000:00:1f\.6: .*left alone: it is the NIC of the default route/,
    );
    const r = cli(['recover', '--root', root]);
    expect(r.code).toBe(1);
    expect(driverOf(root, ROUTE_NIC)).toBe('e1000e');
  });

  it('a PF held on vfio-pci is not given back while the default route runs through one of its VFs', () => {
    // vfio-pci enables SR-IOV for the host too: giving the PF back would take its VFs away.
    const root = copy('workstation');
    const pf = join(root, 'sys/bus/pci/devices', SRIOV_PF);
    unlinkSync(join(pf, 'driver'));
    symlinkSync('../../../../bus/pci/drivers/vfio-pci', join(pf, 'driver'));
    writeFileSync(
      join(root, 'proc/net/route'),
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' +
        'enp3s2f1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n',
    );
    writeState(root, [record('win11', SRIOV_PF, 'i40e')]);
    runHook(root, 'win11', 'release', 'end');
    expect(driverOf(root, SRIOV_PF)).toBe('vfio-pci');
    expect(readFileSync(hookLog(root), 'utf8')).toMatch(
      /0000:03:00\.0 left alone: it is the physical function of the default route's VF \(enp3s2f1\)/,
    );
  });

  it('a record whose ids differ from the device now at that address leaves the device alone', () => {
    const root = copy('workstation');
    writeState(root, [record('win11', USB_CARD, null, { vendor: '10de', device: '2204' })]);
    runHook(root, 'win11', 'release', 'end');
    expect(driverOf(root, USB_CARD)).toBe('xhci_hcd');
    expect(readFileSync(hookLog(root), 'utf8')).toMatch(
      /0000:05:00\.0 left alone: it is a 1b73:1100 now, the record was made for a 10de:2204/,
    );
  });

  it('prepare records the ids; a record written before ids were kept is still released', () => {
    const root = copy('workstation');
    const prepared = runHook(root, 'win11', 'prepare');
    expect(prepared.stderr).toBe('');
    expect(driverOf(root, GPU)).toBe('vfio-pci');
    const written = records(root) as { address: string; vendor?: string; device?: string }[];
    expect(written.find((r) => r.address === GPU)).toMatchObject({ vendor: '10de', device: '2204' });
    // As an older qemu-hook wrote it: no ids.
    writeState(
      root,
      written.map(({ vendor: _v, device: _d, ...old }) => old),
    );
    runHook(root, 'win11', 'release', 'end');
    expect(driverOf(root, GPU)).toBe('nvidia');
    expect(records(root)).toEqual([]);
  });
});
