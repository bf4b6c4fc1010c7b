import { describe, expect, it } from 'vitest';
import { hostMatches, parseConfig } from '../../src/config/parse.js';

const gpu = (address: string) => `
        devices:
          - name: gpu
            match: { address: "${address}", vendor: "10de", device: "2204" }`;

const CONFIG = `
domains:
  win11:${gpu('0000:01:00.0')}
  backup: {}
hosts:
  "rig-*":
    domains:
      win11:${gpu('0000:02:00.0')}
  rig-7:
    domains:
      win11:${gpu('0000:07:00.0')}
  lab?:
    domains:
      ml:${gpu('0000:03:00.0')}
`;

const addressOf = (host: string | null, domain = 'win11') => {
  const r = parseConfig(CONFIG, { host });
  const d = r.config?.domains.get(domain);
  const e = d?.devices[0];
  return e?.type === 'pci' ? e.tiers[0]?.address?.toString() : undefined;
};

describe('hosts: sections', () => {
  it('replace the shared domain of the same name on the hosts they name; the others keep the shared one', () => {
    expect(addressOf('rig-1')).toBe('0000:02:00.0');
    expect(addressOf('desk')).toBe('0000:01:00.0');
    expect(addressOf(null)).toBe('0000:01:00.0');
  });

  it('let the exact hostname win over a glob, whatever their order', () => {
    expect(addressOf('rig-7')).toBe('0000:07:00.0');
    expect(parseConfig(CONFIG, { host: 'rig-7' }).config?.hostSections).toEqual(['rig-*', 'rig-7']);
  });

  it('add domains only the matching hosts have, and keep the shared ones they do not name', () => {
    const lab = parseConfig(CONFIG, { host: 'LAB1' }).config;
    expect([...(lab?.domains.keys() ?? [])].sort()).toEqual(['backup', 'ml', 'win11']);
    expect(parseConfig(CONFIG, { host: 'lab12' }).config?.domains.has('ml')).toBe(false);
  });

  it("refuse a broken section's domain on its hosts only; elsewhere its problems are warnings", () => {
    const broken = `${CONFIG}  desk:
    domains:
      win11:
        devices:
          - { name: gpu, match: { vendor: "zz" } }
`;
    const desk = parseConfig(broken, { host: 'desk' });
    expect(desk.config?.domains.has('win11')).toBe(false);
    expect(desk.config?.invalidDomains.get('win11')?.[0]).toMatch(
      /^hosts\.desk\.domains\.win11\.devices\[0\]/,
    );
    const other = parseConfig(broken, { host: 'rig-1' });
    expect(other.config?.domains.has('win11')).toBe(true);
    expect(other.warnings[0]).toMatch(/^hosts\.desk\.domains\.win11\.devices\[0\]/);
  });

  it('refuse a section that is not a map of domains', () => {
    const r = parseConfig('hosts:\n  rig-1:\n    devices: []\n', { host: 'rig-1' });
    expect(r.config).toBeNull();
    expect(r.errors.join('\n')).toMatch(/hosts\.rig-1/);
  });

  it('match hostnames as globs: * any run, ? one character, no regex, any case', () => {
    expect(hostMatches('web*', 'web01.example.org')).toBe(true);
    expect(hostMatches('web?', 'web12')).toBe(false);
    expect(hostMatches('a.b', 'axb')).toBe(false);
    expect(hostMatches('Gpu-Box', 'gpu-box')).toBe(true);
  });
});
