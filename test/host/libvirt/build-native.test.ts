import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultAddonPath } from '../../../src/host/libvirt/loader.js';
import { repoRoot } from './support.js';

// The install script must never fail `npm ci`: without its prerequisites it says what to
// install and exits 0. (The real build is exercised by `npm ci` itself, not here: it rewrites
// native/build, which other test files load.)
const script = join(repoRoot, 'scripts/build-native.mjs');

let emptyBin: string;

beforeAll(async () => {
  emptyBin = await mkdtemp(join(tmpdir(), 'qemu-hook-nobin-'));
});

afterAll(async () => {
  await rm(emptyBin, { recursive: true, force: true });
});

async function addonMtime(): Promise<number | null> {
  return stat(defaultAddonPath()).then(
    (s) => s.mtimeMs,
    () => null,
  );
}

function run(env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [script], { env, encoding: 'utf8' });
}

describe('scripts/build-native.mjs without prerequisites', () => {
  it('skips when pkg-config finds no libvirt (PKG_CONFIG=false), exit 0, one line', async () => {
    const before = await addonMtime();
    const r = run({ ...process.env, PKG_CONFIG: 'false' });
    expect(r.status).toBe(0);
    const lines = `${r.stdout}${r.stderr}`.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^qemu-hook: libvirt binding not built \(missing pkg-config\)/);
    expect(lines[0]).toMatch(/Install: .*libvirt/);
    expect(lines[0]).toContain('re-run npm ci');
    expect(await addonMtime()).toBe(before);
  });

  it('names every missing tool when nothing is on PATH', () => {
    const r = run({ PATH: emptyBin, HOME: emptyBin });
    expect(r.status).toBe(0);
    expect(r.stderr.trim()).toContain('missing pkg-config, a C++ compiler, make, python3');
  });
});
