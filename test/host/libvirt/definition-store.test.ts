import { afterEach, describe, expect, it } from 'vitest';
import { LibvirtConnection } from '../../../src/host/libvirt/connection.js';
import { LibvirtDefinitionStore } from '../../../src/host/libvirt/definition-store.js';
import { InvariantError, LibvirtError } from '../../../src/model/errors.js';
import { addonBuilt, fixtureUri } from './support.js';

const stores: LibvirtDefinitionStore[] = [];
function store(): LibvirtDefinitionStore {
  const s = LibvirtDefinitionStore.forUri(fixtureUri);
  stores.push(s);
  return s;
}

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

describe.skipIf(!addonBuilt)('LibvirtDefinitionStore against the test driver', () => {
  it('returns the persistent XML and where it came from', async () => {
    const found = await store().persistentXml('win11');
    expect(found?.source).toBe(`libvirt ${fixtureUri}`);
    expect(found?.xml).toMatch(/^<domain type='test'>/);
    expect(found?.xml).toContain("<alias name='ua-gpu'/>");
  });

  it('reads definitions over a read-only connection, where libvirt refuses secrets', async () => {
    const ro = new LibvirtDefinitionStore(fixtureUri, { readOnly: true });
    stores.push(ro);
    expect((await ro.persistentXml('win11'))?.xml).toContain("<alias name='ua-gpu'/>");
    // what the store avoids: asking for secrets read-only fails
    await LibvirtConnection.withConnection(
      fixtureUri,
      async (c) => {
        await expect((await c.domain('win11')).xml({ inactive: true, secure: true })).rejects.toBeInstanceOf(
          LibvirtError,
        );
      },
      { readOnly: true },
    );
  });

  it('returns null for a domain that is not defined', async () => {
    expect(await store().persistentXml('nope')).toBeNull();
  });

  it('says whether a domain runs; an undefined one does not', async () => {
    const s = store();
    expect(await s.isActive('web')).toBe(true);
    expect(await s.isActive('win11')).toBe(false);
    expect(await s.isActive('nope')).toBe(false);
  });

  it('defines a changed definition that later reads return', async () => {
    let conn: LibvirtConnection | undefined;
    const s = new LibvirtDefinitionStore(async () => {
      conn = await LibvirtConnection.open(fixtureUri);
      return conn;
    });
    stores.push(s);
    const before = (await s.persistentXml('win11'))!.xml;
    const changed = before.replace(
      '</devices>',
      "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source><alias name='ua-gpu-audio'/></hostdev></devices>",
    );
    await s.define('win11', changed);
    const after = (await s.persistentXml('win11'))!.xml;
    expect(after).toContain("<alias name='ua-gpu-audio'/>");
    expect(after).toContain("<alias name='ua-gpu'/>");
    expect(await s.isActive('win11')).toBe(false);
    await s.close();
    expect(conn?.closed).toBe(true);
  });

  it('refuses XML whose name is not the domain asked for', async () => {
    const s = store();
    const xml = (await s.persistentXml('web'))!.xml
      .replace(/<uuid>[^<]*<\/uuid>/, '')
      .replace('<name>web</name>', '<name>other</name>');
    await expect(s.define('web', xml)).rejects.toBeInstanceOf(InvariantError);
  });

  it('passes other libvirt failures through as LibvirtError', async () => {
    await expect(store().define('x', '<domain')).rejects.toBeInstanceOf(LibvirtError);
  });
});
