import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach } from 'vitest';

export const REPO = resolve(import.meta.dirname, '../..');
export const MAIN = join(REPO, 'dist/cli/main.cjs');
export const HOSTS = join(REPO, 'fixtures/hosts');

/** Runs the built CLI as a user would. `npm test` builds dist/ first. */
export function cli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A private copy of a fixture host (they are symlink trees), for tests that write. */
export function copyHost(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `qh-${name}-`));
  cpSync(join(HOSTS, name), dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

/** Temporary folders for one test file (`qh-<prefix>-…`): every one is removed after each test. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), `qh-${prefix}-`));
    dirs.push(dir);
    return dir;
  };
}

/** copyHost for one test file: every copy is removed after each test. */
export function hostCopies(): (name: string) => string {
  const copies: string[] = [];
  afterEach(() => {
    for (const d of copies.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return (name) => {
    const dir = copyHost(name);
    copies.push(dir);
    return dir;
  };
}
