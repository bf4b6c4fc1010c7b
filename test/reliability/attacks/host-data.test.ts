// Attack (data loss): iommuGroup: detach took a disk controller whose disk held a mounted
// filesystem; only the root disk was protected.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { driverOf, runHook } from '../../support/attack.js';
import { cli, HOSTS, hostCopies } from '../../support/cli.js';

const copy = hostCopies();
const ASMEDIA = '0000:02:00.0'; // in the Radeon's IOMMU group; sdb1 on it is mounted at /srv/data

describe('disks the host uses are protected like the root disk', () => {
  it('a group sibling holding a mounted filesystem refuses the start, named by its mount point', () => {
    const root = copy('shared-group');
    const r = runHook(root, 'win11-detach', 'prepare');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('it is the controller of a disk the host uses (/srv/data on sdb1)');
    expect(driverOf(root, ASMEDIA)).toBe('ahci');
    expect(driverOf(root, '0000:01:00.0')).toBe('amdgpu');
  });

  it('an active swap partition protects its controller too', () => {
    const root = copy('shared-group');
    const mounts = join(root, 'proc/mounts');
    writeFileSync(mounts, readFileSync(mounts, 'utf8').replace(/^\/dev\/sdb1 .*\n/m, ''));
    writeFileSync(
      join(root, 'proc/swaps'),
      'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdb1                               partition\t8388604\t\t0\t\t-2\n',
    );
    const r = cli(['--simulate', 'win11-detach', 'prepare', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('(swap on sdb1)');
  });

  it('a member of an active md array is protected (devices says so)', () => {
    const r = cli(['devices', '--root', join(HOSTS, 'workstation'), '--json']);
    const sata = (JSON.parse(r.stdout).protected as { address: string; detail: string }[]).filter(
      (p) => p.address === '0000:00:17.0',
    );
    expect(sata.map((p) => p.detail)).toEqual(['controller of a disk the host uses (member of md0 on sda1)']);
  });
});
