// What the reliability suite needs around a fixture host: run the built program on it as libvirt
// and a user would (in a child process, so that it can die), and read back what it left.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { copyHost, MAIN } from '../../support/cli.js';

export interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The built program on a fixture root. QEMU_HOOK_ROOT is always set, whatever the command: a hook
 * run without it would work on this machine's own devices.
 */
export function run(
  root: string,
  args: readonly string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, ...options.env, QEMU_HOOK_ROOT: root, QEMU_HOOK_LOG_LEVEL: 'info' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => {}); // a program that does not read stdin
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * A libvirt hook call through an installed hooks/qemu (`front`), in the environment libvirt gives
 * it: what reaches the resident hook when one listens for the front's root.
 */
export function hookFront(
  front: string,
  domain: string,
  op: string,
  subop: string,
  xml: string,
  env: NodeJS.ProcessEnv = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(front, [domain, op, subop, '-'], {
      env: { LC_ALL: 'C', PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => {});
    child.stdin.end(xml);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A libvirt hook call: `hook <domain> <op> <subop> -`, the domain XML on stdin. */
export function hook(root: string, domain: string, op: string, subop: string, xml: string): Promise<Run> {
  return run(root, ['hook', domain, op, subop, '-'], { input: xml });
}

/**
 * Removes a fixture root once nothing works on it any more: a hook run may have started the
 * detached redefine helper, which outlives the hook and writes its log and the definition under
 * the root (removing the folder under it fails with ENOTEMPTY, or it makes the folder again).
 */
export async function removeHost(root: string, waitMs = 30_000): Promise<void> {
  const mark = `QEMU_HOOK_ROOT=${root}\0`;
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && anyProcessOn(mark)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  rmSync(root, { recursive: true, force: true, maxRetries: 5 });
}

/** Whether a process's environment carries `mark` (our own children only: others' environ is unreadable). */
function anyProcessOn(mark: string): boolean {
  return readdirSync('/proc').some((name) => {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) return false;
    try {
      return `${readFileSync(`/proc/${name}/environ`, 'latin1')}\0`.includes(mark);
    } catch {
      return false; // gone, or not ours
    }
  });
}

/** Private fixture-host copies, removed when the file's tests are done. */
export function hosts(): (name: string) => string {
  const made: string[] = [];
  afterAll(async () => {
    for (const d of made.splice(0)) await removeHost(d);
  });
  return (name) => {
    const dir = copyHost(name);
    made.push(dir);
    return dir;
  };
}

/** address → the driver bound now (null: none), for every PCI device of the fixture. */
export function drivers(root: string): Record<string, string | null> {
  const dir = join(root, 'sys/bus/pci/devices');
  const out: Record<string, string | null> = {};
  for (const a of readdirSync(dir).sort()) {
    try {
      out[a] =
        readlinkSync(join(dir, a, 'driver'))
          .split('/')
          .pop() ?? null;
    } catch {
      out[a] = null;
    }
  }
  return out;
}

export interface Rec {
  readonly domain: string;
  readonly address: string;
  readonly originalDriver: string | null;
  readonly phase: string;
}

export const statePath = (root: string) => join(root, 'var/lib/qemu-hook/state.json');

/** The state file's records; [] when there is none. Throws when it cannot be read as a state file. */
export function records(root: string): Rec[] {
  if (!existsSync(statePath(root))) return [];
  const s = JSON.parse(readFileSync(statePath(root), 'utf8')) as { version: number; records: Rec[] };
  if (s.version !== 1 || !Array.isArray(s.records)) throw new Error('not a state file');
  return s.records;
}

/** The driver calls the fixture's driver control made, in order. */
export function journal(
  root: string,
): { op: string; address: string; from: string | null; to: string | null }[] {
  const path = join(root, 'var/lib/qemu-hook-fixture/driver-calls.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

export const faultFile = (root: string) => join(root, 'etc/qemu-hook/fault-injection');

export function setFault(root: string, rule: string | null): void {
  if (rule === null) rmSync(faultFile(root), { force: true });
  else writeFileSync(faultFile(root), `${rule}\n`);
}

/** Every file, folder and link below `root` with its content or target: equal hashes, nothing changed. */
export function treeHash(root: string): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      h.update(`${p.slice(root.length)}\0${st.mode}\0`);
      if (st.isSymbolicLink()) h.update(readlinkSync(p));
      else if (st.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(root);
  return h.digest('hex');
}

/** No stack trace and no raw object dump: what a user sees is a sentence. */
export function hasStackTrace(text: string): boolean {
  return /^\s+at \S.*(:\d+|\(native\)|<anonymous>)|node:internal|\[object Object\]/m.test(text);
}
