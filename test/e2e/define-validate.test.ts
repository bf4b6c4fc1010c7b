// apply writes through virDomainDefineXMLFlags(…, VIR_DOMAIN_DEFINE_VALIDATE): libvirt checks the
// new definition against its schema before it replaces the old one, and its words reach the user.
// Without the flag libvirt silently drops an element it does not know and defines the rest.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtDefinitionStore } from '../../src/host/libvirt/definition-store.js';
import { canRunLibvirtd, type PrivateLibvirtd, startLibvirtd, tinyDomainXml } from './harness/index.js';

describe.skipIf(!canRunLibvirtd())('apply defines with libvirt validation', { timeout: 120_000 }, () => {
  let daemon: PrivateLibvirtd;
  let dir: string;

  beforeAll(async () => {
    daemon = await startLibvirtd();
    dir = mkdtempSync(join(tmpdir(), 'qh-validate-'));
    writeFileSync(join(dir, 'e2e-val.xml'), tinyDomainXml('e2e-val'));
    await daemon.virshOk(['define', join(dir, 'e2e-val.xml')]);
  }, 90_000);
  afterAll(async () => {
    await daemon?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a definition libvirt would not accept, in libvirt words, and keeps the old one', async () => {
    const store = new LibvirtDefinitionStore(daemon.uri);
    try {
      const bad = tinyDomainXml('e2e-val').replace('<devices>', "<devices>\n    <bogus kind='x'/>");
      const err = await store.define('e2e-val', bad).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^define a domain on .*: .*(schema|bogus|Extra element|validate)/i);
      const kept = await store.persistentXml('e2e-val');
      expect(kept?.xml).not.toMatch(/bogus/);
      // The same store defines a valid change (the flag refuses only what is wrong).
      const good = kept!.xml
        .replace(/<description>[\s\S]*?<\/description>\n/, '')
        .replace('<vcpu', '<description>validated</description>\n  <vcpu');
      await store.define('e2e-val', good);
      expect((await store.persistentXml('e2e-val'))?.xml).toMatch(/<description>validated<\/description>/);
    } finally {
      await store.close();
    }
  });
});
