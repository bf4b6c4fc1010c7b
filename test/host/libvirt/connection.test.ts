import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LibvirtConnection } from '../../../src/host/libvirt/connection.js';
import * as C from '../../../src/host/libvirt/constants.js';
import { loadLibvirtBinding } from '../../../src/host/libvirt/loader.js';
import { InvariantError, LibvirtError } from '../../../src/model/errors.js';
import { addonBuilt, fixtureUri } from './support.js';

const open: LibvirtConnection[] = [];
async function connect(uri: string, readOnly = false): Promise<LibvirtConnection> {
  const c = await LibvirtConnection.open(uri, { readOnly });
  open.push(c);
  return c;
}

afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

describe.skipIf(!addonBuilt)('LibvirtConnection against the test driver', () => {
  it('uses the numbers of the libvirt headers the addon was built against', () => {
    const native = loadLibvirtBinding().constants;
    for (const [name, value] of Object.entries(C)) expect([name, native[name]]).toEqual([name, value]);
    expect(Object.keys(native).sort()).toEqual(Object.keys(C).sort());
  });

  it('opens and closes test:///default, read-write and read-only', async () => {
    const rw = await LibvirtConnection.open('test:///default');
    expect(rw.uri).toBe('test:///default');
    expect(rw.closed).toBe(false);
    await rw.close();
    expect(rw.closed).toBe(true);
    await rw.close(); // idempotent

    const ro = await LibvirtConnection.open('test:///default', { readOnly: true });
    expect((await ro.listNodeDevices()).length).toBeGreaterThan(0);
    await ro.close();
  });

  it('refuses calls on a closed connection as a bug, not a libvirt error', async () => {
    const c = await LibvirtConnection.open('test:///default');
    await c.close();
    await expect(c.nodeDevice('computer')).rejects.toBeInstanceOf(InvariantError);
  });

  it('withConnection closes the connection when the callback throws', async () => {
    let seen: LibvirtConnection | undefined;
    await expect(
      LibvirtConnection.withConnection('test:///default', async (c) => {
        seen = c;
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(seen?.closed).toBe(true);
  });

  it('maps a failed open to a LibvirtError naming the URI', async () => {
    const err = await LibvirtConnection.open('test:///').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    const e = err as LibvirtError;
    expect(e.operation).toBe('connect to test:///');
    expect(e.message.startsWith(`${e.operation}: `)).toBe(true);
    expect(e.code).toBeGreaterThan(0);
  });

  it('gives up on a libvirtd that accepts and never answers, naming the URI and the wait', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qh-silent-'));
    const socket = join(dir, 'libvirt-sock');
    const accepted: Socket[] = [];
    const server = createServer((s) => accepted.push(s));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const uri = `qemu+unix:///system?socket=${socket}`;
      const err = await LibvirtConnection.open(uri, { readOnly: true, timeoutMs: 300 }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(LibvirtError);
      expect((err as LibvirtError).message).toBe(
        `connect to ${uri} (read-only): libvirtd did not answer within 0.3 s; is it stuck? (systemctl status libvirtd)`,
      );
    } finally {
      // Hang up: the open still waiting in its worker thread fails and frees the thread.
      for (const s of accepted) s.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists the default node devices with their capabilities and parents', async () => {
    const c = await connect('test:///default');
    const devices = await c.listNodeDevices();
    const computer = devices.find((d) => d.name === 'computer');
    expect(computer).toEqual({ name: 'computer', parent: null, capabilities: ['system'] });
    expect(devices.filter((d) => d.parent === 'computer').length).toBeGreaterThan(0);
  });

  it('lists the fixture host PCI devices, filtered by capability flag', async () => {
    const c = await connect(fixtureUri, true);
    const all = await c.listNodeDevices();
    const pci = await c.listNodeDevices(C.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV);
    expect(pci.map((d) => d.name).sort()).toEqual([
      'pci_0000_00_14_0',
      'pci_0000_01_00_0',
      'pci_0000_01_00_1',
    ]);
    expect(pci.every((d) => d.capabilities.includes('pci') && d.parent === 'computer')).toBe(true);
    expect(all.map((d) => d.name).sort()).toEqual(['computer', ...pci.map((d) => d.name)].sort());
    expect(await c.listNodeDevices(C.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV)).toEqual([]);
  });

  it('reads a node device XML', async () => {
    const c = await connect(fixtureUri, true);
    const dev = await c.nodeDevice('pci_0000_01_00_0');
    expect(dev.name).toBe('pci_0000_01_00_0');
    const xml = await dev.xml();
    expect(xml).toContain('<name>pci_0000_01_00_0</name>');
    expect(xml).toContain("<vendor id='0x10de'>NVIDIA Corporation</vendor>");
    expect(xml).toContain("<iommuGroup number='12'>");
  });

  it('reports an unknown node device with libvirt code VIR_ERR_NO_NODE_DEVICE', async () => {
    const c = await connect(fixtureUri, true);
    const err = await c.nodeDevice('pci_0000_09_00_0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({
      code: C.VIR_ERR_NO_NODE_DEVICE,
      domain: C.VIR_FROM_TEST,
      operation: `look up node device pci_0000_09_00_0 on ${fixtureUri}`,
    });
  });

  it('surfaces "not supported" for detach and reattach on the test driver as a clean LibvirtError', async () => {
    const c = await connect(fixtureUri);
    const dev = await c.nodeDevice('pci_0000_01_00_0');
    for (const call of [() => dev.detach('vfio'), () => dev.reattach()]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LibvirtError);
      const e = err as LibvirtError;
      expect(e.code).toBe(C.VIR_ERR_NO_SUPPORT);
      expect(e.domain).toBe(C.VIR_FROM_NODEDEV);
      expect(e.message).toContain('not supported');
      expect(e.message).toContain('pci_0000_01_00_0');
    }
  });

  it('looks up domains, reads their state and their inactive XML', async () => {
    const c = await connect(fixtureUri);
    const web = await c.domain('web');
    const win11 = await c.domain('win11');
    expect([web.name, win11.name]).toEqual(['web', 'win11']);
    expect(await web.isActive()).toBe(true);
    expect(await win11.isActive()).toBe(false);
    const xml = await win11.xml({ inactive: true, secure: true });
    expect(xml).toContain('<name>win11</name>');
    expect(xml).toContain("<alias name='ua-gpu'/>");
    expect(xml).toContain("<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>");
  });

  it('reports an unknown domain with VIR_ERR_NO_DOMAIN', async () => {
    const c = await connect(fixtureUri, true);
    await expect(c.domain('nope')).rejects.toMatchObject({ name: 'LibvirtError', code: C.VIR_ERR_NO_DOMAIN });
  });

  it('defines a domain, then starts it', async () => {
    const c = await connect(fixtureUri);
    const xml = (await (await c.domain('win11')).xml({ inactive: true, secure: true }))
      .replace('<name>win11</name>', '<name>lab</name>')
      .replace(/<uuid>[^<]*<\/uuid>/, '')
      .replace('ua-gpu', 'ua-lab-gpu');
    const lab = await c.defineDomain(xml);
    expect(lab.name).toBe('lab');
    expect(await lab.isActive()).toBe(false);
    expect(await (await c.domain('lab')).xml({ inactive: true })).toContain("<alias name='ua-lab-gpu'/>");
    await lab.create();
    expect(await lab.isActive()).toBe(true);
    // starting it again is an error libvirt reports, not a crash
    const again = await lab.create().catch((e: unknown) => e);
    expect(again).toBeInstanceOf(LibvirtError);
    expect((again as LibvirtError).message).toMatch(/^start domain lab on test:.*: .*already running/);
  });

  it('reports malformed XML on define as a LibvirtError', async () => {
    const c = await connect(fixtureUri);
    const err = await c.defineDomain('<domain type="test"><name>x</nam').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({ operation: `define a domain on ${fixtureUri}` });
    expect((err as LibvirtError).code).toBeGreaterThan(0);
    await expect(c.domain('x')).rejects.toMatchObject({ code: C.VIR_ERR_NO_DOMAIN });
  });

  it('keeps each fixture connection separate', async () => {
    const a = await connect(fixtureUri);
    const b = await connect(fixtureUri);
    await (await a.domain('win11')).create();
    expect(await (await a.domain('win11')).isActive()).toBe(true);
    expect(await (await b.domain('win11')).isActive()).toBe(false);
  });

  it('runs calls concurrently on one connection', async () => {
    const c = await connect(fixtureUri, true);
    const names = ['pci_0000_01_00_0', 'pci_0000_01_00_1', 'pci_0000_00_14_0', 'computer'];
    const xmls = await Promise.all(names.map(async (n) => (await c.nodeDevice(n)).xml()));
    expect(xmls.map((xml) => /<name>([^<]+)<\/name>/.exec(xml)?.[1])).toEqual(names);
  });

  it('lets go of the devices and domains it handed out when it closes (libvirt then really closes it)', async () => {
    const c = await LibvirtConnection.open(fixtureUri, { readOnly: true });
    const dev = await c.nodeDevice('pci_0000_01_00_1');
    const dom = await c.domain('win11');
    // A call under way when the connection closes holds its own reference and finishes.
    const running = dev.xml();
    await c.close();
    expect(await running).toContain('<name>pci_0000_01_00_1</name>');
    await expect(dev.xml()).rejects.toThrow(/node device was freed/);
    await expect(dom.isActive()).rejects.toThrow(/domain was freed/);
    expect([dev.name, dom.name]).toEqual(['pci_0000_01_00_1', 'win11']); // still named, for errors
  });
});
