// `qemu-hook snapshot` → `--root FILE.tar.gz`: a snapshot of a host replays to the same answers as
// the host it was taken from, through the built program.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, HOSTS, hostCopies } from '../support/cli.js';

const work = mkdtempSync(join(tmpdir(), 'qh-snapshot-test-'));
// Every run gets its own TMPDIR, so a test can tell that the unpacked copy was removed.
const tmp = join(work, 'tmp');
mkdirSync(tmp);
const run = (args: string[]) => cli(args, { env: { TMPDIR: tmp } });
afterAll(() => rmSync(work, { recursive: true, force: true }));

function take(root: string, name: string, extra: string[] = []): string {
  const file = join(work, `${name}.tar.gz`);
  const r = run(['snapshot', '--root', root, '--output', file, ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return file;
}

/** Output with the host's root spelt `<root>`, whether it was a folder or a snapshot. */
const same = (text: string, root: string) => text.replaceAll(root, '<root>');

describe.each(readdirSync(HOSTS))('a snapshot of fixture host %s', { timeout: 240_000 }, (host) => {
  const root = join(HOSTS, host);
  let file = '';
  beforeAll(() => {
    file = take(root, host);
  }, 60_000);
  const domains = readdirSync(join(root, 'etc/libvirt/qemu')).map((f) => f.replace(/\.xml$/, ''));

  it('is small and says what it captured', () => {
    const size = statSync(file).size;
    console.log(`[snapshot size] ${host}: ${size} bytes (the fixture folder is a full tree)`);
    expect(size).toBeLessThan(1024 * 1024);
    const r = run(['snapshot', '--root', root, '--output', join(work, `${host}-again.tar.gz`)]);
    expect(r.stdout).toMatch(/^wrote .*\.tar\.gz \(\d+ KiB\), host host:\n/);
    expect(r.stdout).toMatch(/^ {2}\d+ PCI devices$/m);
    expect(r.stdout).toMatch(/^ {2}1 config$/m);
    expect(r.stdout).toMatch(new RegExp(`^  ${domains.length} domain definitions$`, 'm'));
  });

  it('replays to the same devices --json, check and --simulate --json of every domain', () => {
    const both = (args: string[]) => {
      const a = run([...args, '--root', root]);
      const b = run([...args, '--root', file]);
      return [
        { code: a.code, out: same(a.stdout, root), err: same(a.stderr, root) },
        { code: b.code, out: same(b.stdout, file), err: same(b.stderr, file) },
      ];
    };
    const [devA, devB] = both(['devices', '--json']);
    expect(JSON.parse(devB!.out)).toEqual(JSON.parse(devA!.out));
    expect(devB).toEqual(devA);
    const [checkA, checkB] = both(['check']);
    expect(checkB).toEqual(checkA);
    for (const domain of domains) {
      for (const event of ['prepare', 'release']) {
        const [a, b] = both(['--simulate', domain, event, '--json']);
        expect(b, `${domain} ${event}`).toEqual(a);
      }
    }
    // Each replay unpacked into its own folder under TMPDIR and removed it.
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe('a snapshot of this machine', { timeout: 60_000 }, () => {
  it('replays to the same devices --json as the live host (reads the real /sys, writes nothing there)', () => {
    const file = join(work, 'this-machine.tar.gz');
    const r = run(['snapshot', '--output', file]);
    expect(r.code).toBe(0);
    console.log(`[snapshot size] this machine: ${statSync(file).size} bytes\n${r.stdout}`);
    const live = run(['devices', '--json']);
    const replay = run(['devices', '--json', '--root', file]);
    expect(replay.code).toBe(0);
    // Paths in warnings name the snapshot where the live host names /.
    expect(JSON.parse(replay.stdout.replaceAll(`${file}/`, '/'))).toEqual(JSON.parse(live.stdout));
  });
});

describe('--redact', { timeout: 240_000 }, () => {
  const copy = hostCopies();

  it('replaces USB serials, MAC addresses, UUIDs and the hostname consistently, and the snapshot still replays', () => {
    const root = copy('workstation');
    writeFileSync(join(root, 'proc/sys/kernel/hostname'), 'gaming-rig\n');
    mkdirSync(join(root, 'var/lib/gaming-rig'), { recursive: true });
    const plain = take(root, 'plain');
    const redacted = take(root, 'redacted', ['--redact']);
    const text = gunzipSync(readFileSync(redacted)).toString('latin1');
    const original = gunzipSync(readFileSync(plain)).toString('latin1');
    const serial = '4C530001240101109511'; // the backup stick's, matched by the config
    const mac = '52:54:00:12:34:56'; // the SR-IOV VF's, in the config
    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(original)?.[0];
    expect(original).toContain(serial);
    expect(original).toContain(mac);
    expect(original).toContain('gaming-rig');
    expect(uuid).toBeDefined();
    expect(text).not.toContain(serial);
    expect(text).not.toContain(mac);
    expect(text).not.toContain(uuid);
    expect(text).not.toContain('gaming-rig');

    // Replay: the same plans (the serial still matches the config's stand-in), the same device list
    // but for the identifiers.
    for (const domain of ['win11', 'router', 'backup']) {
      const a = run(['--simulate', domain, 'prepare', '--json', '--root', plain]);
      const b = run(['--simulate', domain, 'prepare', '--json', '--root', redacted]);
      expect(b.code, domain).toBe(a.code);
      const pa = JSON.parse(a.stdout);
      const pb = JSON.parse(b.stdout);
      expect(pb.ok).toBe(pa.ok);
      expect(pb.devices.map((d: { address: string }) => d.address)).toEqual(
        pa.devices.map((d: { address: string }) => d.address),
      );
    }
    const devA = JSON.parse(run(['devices', '--json', '--root', plain]).stdout);
    const devB = JSON.parse(run(['devices', '--json', '--root', redacted]).stdout);
    expect(devB.pci).toEqual(devA.pci);
    expect(devB.usb.map((u: { serial: string | null }) => u.serial)).not.toContain(serial);
    expect(devB.usb.length).toBe(devA.usb.length);
  });
});
