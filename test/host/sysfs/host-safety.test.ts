import { symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SysfsHostSafety } from '../../../src/host/sysfs/host-safety.js';
import { PciAddress } from '../../../src/model/pci-address.js';
import { copyHost } from '../../fixtures/fixture-hosts.js';

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups) c();
  cleanups = [];
});

const PF = '0000:03:00.0';
const ROUTE =
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' +
  'enp3s2f1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n';

/** The workstation's SR-IOV PF held by vfio-pci, the default route through its VF enp3s2f1. */
function pfOnVfio(): { root: string; pf: string; safety: SysfsHostSafety } {
  const { root, cleanup } = copyHost('workstation');
  cleanups.push(cleanup);
  const pf = join(root, 'sys/bus/pci/devices', PF);
  unlinkSync(join(pf, 'driver'));
  symlinkSync('../../../../bus/pci/drivers/vfio-pci', join(pf, 'driver'));
  writeFileSync(join(root, 'proc/net/route'), ROUTE);
  return { root, pf, safety: new SysfsHostSafety(join(root, 'sys'), join(root, 'proc')) };
}

describe('SysfsHostSafety.protection of a function on vfio-pci', () => {
  it('with VFs enabled: looked up in the host uses (a VF carries the default route)', async () => {
    const { safety } = pfOnVfio();
    expect(await safety.protection(PciAddress.parse(PF))).toMatch(
      /physical function of the default route's VF/,
    );
  });

  it('with sriov_numvfs unreadable: counted as having VFs, looked up', async () => {
    const { pf, safety } = pfOnVfio();
    unlinkSync(join(pf, 'sriov_numvfs'));
    symlinkSync('sriov_numvfs', join(pf, 'sriov_numvfs')); // a loop: ELOOP, not ENOENT
    expect(await safety.protection(PciAddress.parse(PF))).toMatch(/default route's VF/);
  });

  it('without VFs: nothing of the host can run through it, so it is not protected', async () => {
    // (The route file still names the VF: the rule, not the host's uses, decides here.)
    const { pf, safety } = pfOnVfio();
    writeFileSync(join(pf, 'sriov_numvfs'), '0\n');
    expect(await safety.protection(PciAddress.parse(PF))).toBeNull();
  });

  it('on its own driver: protected whatever its VFs', async () => {
    const { pf, safety } = pfOnVfio();
    unlinkSync(join(pf, 'driver'));
    symlinkSync('../../../../bus/pci/drivers/i40e', join(pf, 'driver'));
    writeFileSync(join(pf, 'sriov_numvfs'), '0\n');
    expect(await safety.protection(PciAddress.parse(PF))).toMatch(/default route's VF/);
  });
});
