// The harness itself: the XML it builds, the guards that keep it off the machine's libvirt folders,
// and that stop() leaves nothing behind.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOMParser } from '@xmldom/xmldom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertSafeEtcDir,
  canRunLibvirtd,
  libvirtdUnavailableReason,
  type PrivateLibvirtd,
  pciHostdevXml,
  startLibvirtd,
  tinyDomainXml,
} from './index.js';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'libvirtd-ns.sh');
const PRIVATE_PATHS = [
  '/etc/libvirt',
  '/run/libvirt',
  '/var/lib/libvirt',
  '/var/log/libvirt',
  '/var/cache/libvirt',
];

function parse(xml: string) {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const root = doc.documentElement;
  if (!root) throw new Error('no document element');
  return root;
}

/** Mount points (field 5 of mountinfo) of a process. */
function mountPoints(pid: number | 'self'): string[] {
  return readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[4] ?? '');
}

describe('tinyDomainXml', () => {
  it('is a TCG domain with one vCPU, no disk, no NIC, no USB controller, no balloon', () => {
    const root = parse(tinyDomainXml('tiny-1'));
    expect(root.getAttribute('type')).toBe('qemu');
    expect(root.getElementsByTagName('name')[0]?.textContent).toBe('tiny-1');
    expect(root.getElementsByTagName('vcpu')[0]?.textContent).toBe('1');
    const memory = root.getElementsByTagName('memory')[0];
    expect([memory?.getAttribute('unit'), memory?.textContent]).toEqual(['MiB', '64']);
    const type = root.getElementsByTagName('type')[0];
    expect([type?.getAttribute('arch'), type?.getAttribute('machine'), type?.textContent]).toEqual([
      'x86_64',
      'pc',
      'hvm',
    ]);
    for (const absent of ['disk', 'interface', 'graphics', 'serial', 'console', 'metadata']) {
      expect(root.getElementsByTagName(absent).length, absent).toBe(0);
    }
    const usb = root.getElementsByTagName('controller')[0];
    expect([usb?.getAttribute('type'), usb?.getAttribute('model')]).toEqual(['usb', 'none']);
    expect(root.getElementsByTagName('memballoon')[0]?.getAttribute('model')).toBe('none');
  });

  it('puts hostdevs inside <devices> and metadata inside <metadata>', () => {
    const root = parse(
      tinyDomainXml('tiny-2', {
        hostdevs: pciHostdevXml('0000:0a:1f.3', { alias: 'ua-gpu' }),
        metadata: "<qh:cfg xmlns:qh='urn:qemu-hook:test'>x</qh:cfg>",
        memoryMiB: 128,
      }),
    );
    const hostdev = root.getElementsByTagName('hostdev')[0];
    expect(hostdev?.parentNode?.nodeName).toBe('devices');
    expect(hostdev?.getAttribute('managed')).toBe('no');
    const address = hostdev?.getElementsByTagName('address')[0];
    expect(['domain', 'bus', 'slot', 'function'].map((a) => address?.getAttribute(a))).toEqual([
      '0x0000',
      '0x0a',
      '0x1f',
      '0x3',
    ]);
    expect(hostdev?.getElementsByTagName('alias')[0]?.getAttribute('name')).toBe('ua-gpu');
    expect(root.getElementsByTagName('qh:cfg')[0]?.parentNode?.nodeName).toBe('metadata');
    expect(root.getElementsByTagName('memory')[0]?.textContent).toBe('128');
  });

  it('refuses a NIC that would need a host network, but takes a VF passed through', () => {
    expect(() =>
      tinyDomainXml('t', { hostdevs: "<interface type='network'><source network='default'/></interface>" }),
    ).toThrow(/NIC/);
    expect(() => tinyDomainXml('t', { hostdevs: '<interface type="bridge"/>' })).toThrow(/NIC/);
    const vf =
      "<interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/></source></interface>";
    expect(parse(tinyDomainXml('t', { hostdevs: vf })).getElementsByTagName('interface').length).toBe(1);
  });

  it('refuses names that are not plain', () => {
    expect(() => tinyDomainXml("a'b")).toThrow(/name/);
    expect(() => tinyDomainXml('</name>')).toThrow(/name/);
    expect(() => pciHostdevXml('01:00.0')).toThrow(/PCI address/);
  });
});

describe('assertSafeEtcDir', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'qemu-hook-etcdir-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("refuses the machine's /etc and libvirt folders, also through a symlink", () => {
    for (const p of ['/etc', '/etc/libvirt', '/etc/libvirt/hooks', '/var/lib/libvirt', '/run/libvirt/x']) {
      expect(() => assertSafeEtcDir(p), p).toThrow(/refusing/);
    }
    symlinkSync('/etc', join(work, 'etc-link'));
    expect(() => assertSafeEtcDir(join(work, 'etc-link', 'libvirt'))).toThrow(/refusing/);
  });

  it('sees through a link also where the folder behind it does not exist (a machine without libvirt)', () => {
    symlinkSync('/etc', join(work, 'etc-link-2'));
    expect(() => assertSafeEtcDir(join(work, 'etc-link-2', 'qemu-hook-no-such-folder', 'x'))).toThrow(
      /refusing/,
    );
    // A dangling link, itself through a link.
    symlinkSync('/var/lib/libvirt/qemu-hook-no-such-folder', join(work, 'dangling'));
    symlinkSync(join(work, 'dangling'), join(work, 'to-dangling'));
    expect(() => assertSafeEtcDir(join(work, 'to-dangling', 'etc'))).toThrow(/refusing/);
  });

  it('takes a folder of its own, and says when it is missing or relative', () => {
    mkdirSync(join(work, 'root', 'etc', 'libvirt'), { recursive: true });
    expect(assertSafeEtcDir(join(work, 'root', 'etc', 'libvirt'))).toMatch(/root\/etc\/libvirt$/);
    expect(() => assertSafeEtcDir(join(work, 'nope'))).toThrow(/does not exist/);
    expect(() => assertSafeEtcDir('etc/libvirt')).toThrow(/absolute/);
  });
});

describe.skipIf(libvirtdUnavailableReason() !== undefined)('libvirtd-ns.sh', () => {
  it('refuses to mount anything when it is still in the namespace it started from', () => {
    const state = mkdtempSync(join(tmpdir(), 'qemu-hook-ns-guard-'));
    try {
      // Run inside a throwaway namespace, so that even a broken guard could not touch this one:
      // the launcher is told the namespace it runs in is the one it started from.
      const r = spawnSync(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          'export QEMU_HOOK_E2E_OUTER_NS=$(readlink /proc/self/ns/mnt); exec bash "$0" "$1"',
          LAUNCHER,
          state,
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/not in a private mount namespace.*refusing to mount/);
      expect(existsSync(join(state, 'sock'))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!canRunLibvirtd())('startLibvirtd / stop', { timeout: 240_000 }, () => {
  let work: string;
  let daemon: PrivateLibvirtd | undefined;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'qemu-hook-harness-'));
  });
  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  it('runs on a given etcDir, mounts only in its own namespace, and leaves nothing behind', async () => {
    const etcDir = join(work, 'root', 'etc', 'libvirt');
    mkdirSync(etcDir, { recursive: true });
    daemon = await startLibvirtd({ etcDir });
    const d = daemon;
    const { stateDir } = d;

    const ours = mountPoints('self');
    const its = mountPoints(d.pid());
    for (const p of PRIVATE_PATHS) {
      expect(ours, `this process sees no mount on ${p}`).not.toContain(p);
      expect(its, `libvirtd has its own ${p}`).toContain(p);
    }

    writeFileSync(join(work, 'h.xml'), tinyDomainXml('harness-a'));
    await d.virshOk(['define', join(work, 'h.xml')]);
    expect(existsSync(join(etcDir, 'qemu', 'harness-a.xml'))).toBe(true);
    await d.virshOk(['start', 'harness-a']);
    const qemuPid = Number.parseInt(readFileSync(join(stateDir, 'run', 'qemu', 'harness-a.pid'), 'utf8'), 10);
    const daemonPid = d.pid();
    expect(execFileSync('ps', ['-o', 'comm=', '-p', String(qemuPid)], { encoding: 'utf8' })).toMatch(/qemu/);

    await d.stop();
    daemon = undefined;
    const alive = (pid: number) => spawnSync('kill', ['-0', String(pid)]).status === 0;
    expect(alive(qemuPid), 'the domain is gone').toBe(false);
    expect(alive(daemonPid), 'libvirtd is gone').toBe(false);
    expect(existsSync(stateDir), 'the state folder is removed').toBe(false);
    expect(existsSync(join(etcDir, 'qemu', 'harness-a.xml')), 'the given etcDir is kept').toBe(true);
  }, 240_000);
});
