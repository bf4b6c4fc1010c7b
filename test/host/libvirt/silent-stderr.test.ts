import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_NO_SUPPORT,
  VIR_FROM_NODEDEV,
} from '../../../src/host/libvirt/constants.js';
import { defaultAddonPath } from '../../../src/host/libvirt/loader.js';
import { addonBuilt, fixtureUri } from './support.js';

// libvirt prints every error to stderr unless a handler is installed, and in hook mode stderr is
// what `virsh start` shows. A child process makes failing calls; its stderr must stay empty.
// (Not covered: opening a test:// file that does not exist, where libxml2 itself prints an
// "I/O warning"; no hook-mode URI reads a file on the client side.)
const child = `
const { createRequire } = require('node:module');
const b = createRequire(process.cwd() + '/')(process.env.ADDON);
const out = [];
const keep = (e) => out.push({ code: e.code, domain: e.domain, fn: e.function, message: e.message });
(async () => {
  await b.open('test:///', false).catch(keep);
  const c = await b.open(process.env.URI, false);
  const dev = await c.nodeDeviceLookupByName('pci_0000_01_00_0');
  await dev.detachFlags('vfio').catch(keep);
  await dev.reAttach().catch(keep);
  await c.nodeDeviceLookupByName('pci_0000_09_00_0').catch(keep);
  await c.domainLookupByName('nope').catch(keep);
  await c.domainDefineXML('<domain type="test"><name>x</nam').catch(keep);
  await c.close();
  process.stdout.write(JSON.stringify(out));
})();
`;

describe.skipIf(!addonBuilt)('libvirt errors reach no stderr', () => {
  it('reports failures only as rejections, printing nothing', () => {
    const r = spawnSync(process.execPath, ['-e', child], {
      env: { PATH: process.env.PATH, ADDON: defaultAddonPath(), URI: fixtureUri },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const errors = JSON.parse(r.stdout) as Array<{
      code: number;
      domain: number;
      fn: string;
      message: string;
    }>;
    expect(errors.map((e) => e.fn)).toEqual([
      'virConnectOpen',
      'virNodeDeviceDetachFlags',
      'virNodeDeviceReAttach',
      'virNodeDeviceLookupByName',
      'virDomainLookupByName',
      'virDomainDefineXML',
    ]);
    expect(errors[1]).toMatchObject({ code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_NODEDEV });
    expect(errors[1]?.message).toContain('not supported');
    expect(errors[4]?.code).toBe(VIR_ERR_NO_DOMAIN);
    for (const e of errors) expect(e.message.length).toBeGreaterThan(0);
  });
});
