// `--simulate` and `apply` without --root: the persistent definition comes from libvirt (read-only
// for --simulate), and from /etc/libvirt/qemu when libvirt cannot be reached. The host is this
// machine, read only (its /sys is never written: --simulate and apply change no driver).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';
import {
  canRunLibvirtd,
  type PrivateLibvirtd,
  pciHostdevXml,
  startLibvirtd,
  tinyDomainXml,
} from './harness/index.js';
import { clientGone, uncleanCloses } from './support/domains.js';

// An address no machine of ours has: the plan must say the device is not where the definition says.
const NOWHERE = '0000:ee:1f.7';

describe.skipIf(!canRunLibvirtd())(
  '--simulate and apply against a real libvirtd',
  { timeout: 120_000 },
  () => {
    let daemon: PrivateLibvirtd;
    let dir: string;
    let config: string;

    beforeAll(async () => {
      daemon = await startLibvirtd();
      dir = mkdtempSync(join(tmpdir(), 'qh-sim-'));
      config = join(dir, 'config.yaml');
      // A device class this machine surely lacks: resolution fails, whatever the host.
      writeFileSync(
        config,
        `domains:\n  e2e-sim:\n    devices:\n      - { name: gpu, match: { vendor: "10de", device: "2204" } }\nlibvirt: { uri: "${daemon.uri}" }\n`,
      );
      const xml = join(dir, 'e2e-sim.xml');
      writeFileSync(
        xml,
        tinyDomainXml('e2e-sim', { hostdevs: pciHostdevXml(NOWHERE, { alias: 'ua-qemuhook-gpu' }) }),
      );
      await daemon.virshOk(['define', xml]);
    }, 90_000);
    afterAll(async () => {
      await daemon?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }, 60_000);

    it('reads the definition through libvirt and plans against this machine, changing nothing', async () => {
      const before = uncleanCloses(daemon);
      const r = cli(['--simulate', 'e2e-sim', 'prepare', '--config', config, '--json']);
      expect(r.code).toBe(1);
      const plan = JSON.parse(r.stdout);
      expect(plan.definition.source).toBe(`libvirt ${daemon.uri}`);
      expect(plan.errors.join('\n')).toMatch(/gpu: no device matches/);
      await clientGone();
      expect(uncleanCloses(daemon), 'the connection was closed, not dropped').toBe(before);
    });

    it('check plans the same way: the definition through libvirt, the refusal with its reason', async () => {
      const before = uncleanCloses(daemon);
      const r = cli(['check', '--config', config, '--json']);
      expect(r.code).toBe(1);
      const out = JSON.parse(r.stdout);
      const sim = out.domains.find((d: { domain: string }) => d.domain === 'e2e-sim');
      expect(sim.definition.source).toBe(`libvirt ${daemon.uri}`);
      expect(sim.devices[0]).toMatchObject({ name: 'gpu', action: 'refuse' });
      expect(sim.errors.join('\n')).toMatch(/gpu: no device matches/);
      await clientGone();
      expect(uncleanCloses(daemon), 'the connection was closed, not dropped').toBe(before);
    });

    it('says when libvirt is unreachable and falls back to the definition files', () => {
      writeFileSync(
        config,
        `domains:\n  e2e-sim:\n    devices: []\nlibvirt: { uri: "qemu:///system?socket=${join(dir, 'no-such-socket')}" }\n`,
      );
      const r = cli(['--simulate', 'e2e-sim', 'prepare', '--config', config]);
      expect(r.stderr).toMatch(
        /note: libvirt unreachable at qemu:\/\/\/system\?socket=.* reading .*etc\/libvirt\/qemu instead/,
      );
      expect([0, 1]).toContain(r.code);
    });
  },
);
