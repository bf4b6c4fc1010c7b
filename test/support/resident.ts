import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { MAIN, REPO } from './cli.js';

// The resident hook in tests: `qemu-hook serve` for a fixture root, and hooks/qemu installed in
// that root (this checkout as its program, so its front finds the built client).

export const CLIENT = join(REPO, 'native/build/Release/qemu-hook-client');
/** Whether the client and dist/ are built (the client comes with the libvirt binding). */
export const residentBuilt = existsSync(CLIENT) && existsSync(MAIN);

/** hooks/qemu for `root`, as install.sh --root would bake it; returns its path. */
export function installFront(root: string): string {
  const text = readFileSync(join(REPO, 'hooks/qemu'), 'utf8')
    .replace(/^NODE=.*# qemu-hook:node$/m, `NODE='${process.execPath}' # qemu-hook:node`)
    .replace(/^PROGRAM=.*# qemu-hook:program$/m, `PROGRAM='${REPO}' # qemu-hook:program`)
    .replace(/^ROOT=.*# qemu-hook:root$/m, `ROOT='${root}' # qemu-hook:root`);
  mkdirSync(join(root, 'etc/libvirt/hooks'), { recursive: true });
  const hook = join(root, 'etc/libvirt/hooks/qemu');
  // Through a rename, as install.sh does: a front being run keeps the file it opened.
  writeFileSync(`${hook}.tmp`, text);
  chmodSync(`${hook}.tmp`, 0o755);
  renameSync(`${hook}.tmp`, hook);
  return hook;
}

/** Servers started by this test file: killed after each test (`scope` 'each') or after all. */
export function residentServers(scope: 'each' | 'all' = 'each') {
  const servers: ChildProcess[] = [];
  (scope === 'each' ? afterEach : afterAll)(() => {
    for (const s of servers.splice(0)) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
  });
  /** Starts `qemu-hook serve` for `root` and waits until it listens. */
  return async (root: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> => {
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      env: { ...process.env, ...env, QEMU_HOOK_ROOT: root },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    servers.push(child);
    let said = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d) => {
        said += d;
        if (said.includes('answering hook events')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${said}`)));
      setTimeout(() => reject(new Error(`serve did not listen: ${said}`)), 20_000);
    });
    return child;
  };
}

/** The "hook run done" lines (level debug) of the hook log under a fixture root, in order. */
export function hookRunsDone(
  root: string,
): { op: string; domain: string; pid: number; resident?: boolean }[] {
  return readFileSync(join(root, 'var/log/libvirt/qemu-hook.log'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"hook run done"'))
    .map((l) => JSON.parse(l));
}
