// `qemu-hook check --fleet DIR`: one config against snapshots of three hosts, offline.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, copyHost, HOSTS } from '../support/cli.js';

const work = mkdtempSync(join(tmpdir(), 'qh-fleet-test-'));
const snaps = join(work, 'snapshots');
const config = join(work, 'fleet.yaml');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A snapshot of a fixture host under another hostname (the fixtures have none). */
function snapshotAs(fixture: string, hostname: string, dir = snaps): string {
  const root = copyHost(fixture);
  try {
    mkdirSync(join(root, 'proc/sys/kernel'), { recursive: true });
    writeFileSync(join(root, 'proc/sys/kernel/hostname'), `${hostname}\n`);
    const file = join(dir, `${hostname}.tar.gz`);
    const r = cli(['snapshot', '--root', root, '--output', file]);
    expect(r.code, r.stderr).toBe(0);
    return file;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

// The workstation's config for every host; the twin-gpus box (gamma*) gets its own win11 and ml.
const twin = readFileSync(join(HOSTS, 'twin-gpus/etc/qemu-hook/config.yaml'), 'utf8');
const twinDomains = twin
  .slice(twin.indexOf('domains:\n') + 'domains:\n'.length, twin.indexOf('libvirt:'))
  .replace(/^/gm, '    ');
const FLEET = `${readFileSync(join(HOSTS, 'workstation/etc/qemu-hook/config.yaml'), 'utf8')}
hosts:
  "gamma*":
    domains:
${twinDomains}`;

interface FleetJson {
  ok: boolean;
  hosts: {
    snapshot: string;
    host: string;
    hostSections: string[];
    ok: boolean;
    domains: { domain: string; ok: boolean; devices: { name: string; address: string | null }[] }[];
  }[];
}

describe('check --fleet', { timeout: 240_000 }, () => {
  beforeAll(() => {
    mkdirSync(snaps);
    writeFileSync(config, FLEET);
    snapshotAs('workstation', 'alpha');
    snapshotAs('workstation-moved', 'beta');
    snapshotAs('twin-gpus', 'gamma1');
  }, 120_000);

  it('plans every host as check plans it there, with the sections for its hostname', () => {
    const r = cli(['check', '--fleet', snaps, '--config', config, '--json']);
    expect(r.stderr).toBe('');
    const fleet = JSON.parse(r.stdout) as FleetJson;
    expect(fleet.hosts.map((h) => [h.snapshot, h.host, h.hostSections])).toEqual([
      ['alpha.tar.gz', 'alpha', []],
      ['beta.tar.gz', 'beta', []],
      ['gamma1.tar.gz', 'gamma1', ['gamma*']],
    ]);
    // The section's win11 on gamma1 (its GPU pinned at 02:00.0), the shared one elsewhere.
    const gpu = (host: string) =>
      fleet.hosts.find((h) => h.host === host)?.domains.find((d) => d.domain === 'win11')?.devices[0]
        ?.address;
    expect(gpu('alpha')).toBe('0000:01:00.0');
    expect(gpu('gamma1')).toBe('0000:02:00.0');
    expect(fleet.hosts.find((h) => h.host === 'gamma1')?.domains.map((d) => d.domain)).toEqual(
      expect.arrayContaining(['win11', 'ml', 'router', 'backup']),
    );

    // Each host's answer is the one `check` gives on that snapshot with the same config.
    for (const h of fleet.hosts) {
      const one = cli(['check', '--root', join(snaps, h.snapshot), '--config', config, '--json']);
      const alone = JSON.parse(one.stdout) as { ok: boolean; domains: { domain: string; ok: boolean }[] };
      expect(
        h.domains.map((d) => [d.domain, d.ok]),
        h.host,
      ).toEqual(alone.domains.map((d) => [d.domain, d.ok]));
      expect(h.ok).toBe(alone.ok);
    }
    expect(fleet.hosts.find((h) => h.host === 'alpha')?.ok).toBe(true);
    expect(fleet.hosts.find((h) => h.host === 'beta')?.ok).toBe(false); // its definitions are stale
    expect(fleet.ok).toBe(false);
    expect(r.code).toBe(1);
  });

  it('prints a table host × domain with the reason of each refusal', () => {
    const r = cli(['check', '--fleet', snaps, '--config', config]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${config} on 3 hosts: \\d+ starts? would be refused$`));
    expect(lines[1]).toMatch(/^ {2}HOST +SNAPSHOT +DOMAIN +RESULT +WHY$/);
    expect(r.stdout).toMatch(/^ {2}alpha +alpha\.tar\.gz +win11 +ok *$/m);
    expect(r.stdout).toMatch(/^ {2}beta +beta\.tar\.gz +win11 +REFUSED +\S/m);
    expect(r.stdout).toMatch(/^ {2}gamma1 +gamma1\.tar\.gz +win11 +\S+ +.*$/m);
  });

  it('exits 0 when every start on every host would go ahead', () => {
    const dir = join(work, 'all-ok');
    mkdirSync(dir);
    snapshotAs('workstation', 'desk-1', dir);
    snapshotAs('workstation', 'desk-2', dir);
    const r = cli([
      'check',
      '--fleet',
      dir,
      '--config',
      join(HOSTS, 'workstation/etc/qemu-hook/config.yaml'),
    ]);
    expect(r.stdout).toMatch(/on 2 hosts: every start would go ahead/);
    expect(r.code).toBe(0);
  });

  it('says in one line what is wrong with the folder or an archive in it', () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const r = cli(['check', '--fleet', empty, '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `qemu-hook: --fleet ${empty}: no snapshots in it (make them with qemu-hook snapshot on each host)\n`,
    );
    const bad = join(work, 'bad');
    mkdirSync(bad);
    copyFileSync(join(snaps, 'alpha.tar.gz'), join(bad, 'alpha.tar.gz'));
    writeFileSync(join(bad, 'broken.tar.gz'), 'not gzip');
    const b = cli(['check', '--fleet', bad, '--config', config]);
    expect(b.code).toBe(1);
    expect(b.stdout).toMatch(
      /^ {2}\? +broken\.tar\.gz +- +REFUSED +--root .*broken\.tar\.gz is not a folder, nor a snapshot: not a readable \.tar\.gz/m,
    );
  });
});
