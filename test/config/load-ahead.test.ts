import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfigAhead } from '../../src/config/load.js';

// The resident hook's worker parses the config while it waits for an event; the event uses that
// parse only for the very text and host it was made from, and only once.

const CONFIG = `
domains:
  win11:
    devices: [ { name: gpu, match: { address: "0000:01:00.0", vendor: "10de", device: "2204" } } ]
hosts:
  rig-7:
    domains:
      win11:
        devices: [ { name: gpu, match: { address: "0000:07:00.0", vendor: "10de", device: "2204" } } ]
`;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function configFile(text = CONFIG): string {
  const dir = mkdtempSync(join(tmpdir(), 'qh-ahead-'));
  dirs.push(dir);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, text);
  return file;
}
const gpuAddress = (r: Awaited<ReturnType<typeof loadConfigFile>>) => {
  const e = r.config?.domains.get('win11')?.devices[0];
  return e?.type === 'pci' ? e.tiers[0]?.address?.toString() : undefined;
};

describe('a config parsed ahead of the event', () => {
  it('is what the event gets when the file and the host are the same', async () => {
    const file = configFile();
    const ahead = parseConfigAhead(file, { host: 'rig-7' });
    const loaded = await loadConfigFile(file, { host: 'rig-7' });
    expect(loaded.config).toBe(ahead?.config);
    expect(gpuAddress(loaded)).toBe('0000:07:00.0');
  });

  it('is used once: the next load parses again', async () => {
    const file = configFile();
    const ahead = parseConfigAhead(file, {});
    await loadConfigFile(file, {});
    const again = await loadConfigFile(file, {});
    expect(again.config).not.toBe(ahead?.config);
    expect(again.config).toEqual(ahead?.config);
  });

  it('is not used when the file changed since, even by one byte', async () => {
    const file = configFile();
    const ahead = parseConfigAhead(file, {});
    appendFileSync(file, '# edited\n');
    const loaded = await loadConfigFile(file, {});
    expect(loaded.config).not.toBe(ahead?.config);
    writeFileSync(file, CONFIG.replace('0000:01:00.0', '0000:02:00.0'));
    parseConfigAhead(file, {});
    writeFileSync(file, CONFIG);
    expect(gpuAddress(await loadConfigFile(file, {}))).toBe('0000:01:00.0');
  });

  it('is not used for another host name, or another file', async () => {
    const file = configFile();
    parseConfigAhead(file, { host: 'rig-7' });
    expect(gpuAddress(await loadConfigFile(file, { host: 'desk' }))).toBe('0000:01:00.0');
    const other = configFile(CONFIG.replace('0000:01:00.0', '0000:04:00.0'));
    parseConfigAhead(file, {});
    expect(gpuAddress(await loadConfigFile(other, {}))).toBe('0000:04:00.0');
  });
});
