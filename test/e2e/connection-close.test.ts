// libvirtd logs an error ("End of file while reading data: Input/output error") for every client
// that leaves without closing its connection, and virConnectClose closes it for real only once no
// node device handle holds it. The hook frees each device after its detach or reattach and closes
// the connection before it exits; here the addon's part of that, against a private libvirtd (a
// read-only lookup of the root node device, "computer", or of a defined domain: nothing is touched).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultAddonPath } from '../../src/host/libvirt/loader.js';
import { canRunLibvirtd, type PrivateLibvirtd, startLibvirtd } from './harness/index.js';
import { clientGone, defineTiny, uncleanCloses } from './support/domains.js';

const addon = defaultAddonPath();
const CLIENT = `
const b = require(process.argv[1]);
(async () => {
  const c = await b.open(process.argv[2], false);
  const d = process.argv[4] === 'domain' ? await c.domainLookupByName('e2e-close') : await c.nodeDeviceLookupByName('computer');
  if (process.argv[3] === 'free') d.free();
  await c.close();
  b.exitNow(0);
})().catch((e) => { console.error(e.message); process.exit(1); });
`;

describe.skipIf(!canRunLibvirtd() || !existsSync(addon))(
  'a connection closed with its node devices freed',
  { timeout: 120_000 },
  () => {
    let daemon: PrivateLibvirtd;
    let dir: string;
    beforeAll(async () => {
      daemon = await startLibvirtd();
      dir = mkdtempSync(join(tmpdir(), 'qh-close-'));
      await defineTiny(daemon, dir, 'e2e-close');
    }, 90_000);
    afterAll(async () => {
      await daemon?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }, 60_000);

    const client = (how: 'free' | 'keep', what: 'device' | 'domain' = 'device') => {
      const r = spawnSync(process.execPath, ['-e', CLIENT, addon, daemon.uri, how, what], {
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
    };

    it.each(['device', 'domain'] as const)(
      "a client that lets go of its %s handle leaves no error in libvirtd's log; one holding it leaves one",
      async (what) => {
        const before = uncleanCloses(daemon);
        client('free', what);
        await clientGone();
        expect(uncleanCloses(daemon)).toBe(before);
        client('keep', what);
        await clientGone();
        expect(uncleanCloses(daemon)).toBe(before + 1);
      },
    );
  },
);
