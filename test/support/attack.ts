// Helpers for the attack tests (test/reliability/attacks): the built program run as libvirt runs
// the hook, on private copies of the fixture hosts.
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { MAIN } from './cli.js';

export const isRoot = process.getuid?.() === 0;

/** `qemu-hook hook <domain> <op> <subop> -` under QEMU_HOOK_ROOT, the domain XML on stdin. */
export function runHook(root: string, domain: string, op: string, subop = 'begin', xml?: string) {
  const input = xml ?? definition(root, domain);
  const r = spawnSync(process.execPath, [MAIN, 'hook', domain, op, subop, '-'], {
    encoding: 'utf8',
    input,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C', QEMU_HOOK_ROOT: root },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The fixture's persistent definition of `domain` ('' when there is none). */
export function definition(root: string, domain: string): string {
  try {
    return readFileSync(join(root, 'etc/libvirt/qemu', `${domain}.xml`), 'utf8');
  } catch {
    return `<domain type='kvm'><name>${domain}</name></domain>`;
  }
}

/** The driver bound to a fixture PCI device, null when none. */
export function driverOf(root: string, address: string): string | null {
  try {
    return basename(readlinkSync(join(root, 'sys/bus/pci/devices', address, 'driver')));
  } catch {
    return null;
  }
}

export const configPath = (root: string) => join(root, 'etc/qemu-hook/config.yaml');
export const statePath = (root: string) => join(root, 'var/lib/qemu-hook/state.json');
export const hookLog = (root: string) => join(root, 'var/log/libvirt/qemu-hook.log');

/** Appends top-level keys to the fixture's config (replacing any it had with the same name). */
export function setConfigKeys(root: string, keys: Record<string, string>): void {
  let text = readFileSync(configPath(root), 'utf8');
  for (const [k, v] of Object.entries(keys)) {
    text = text.replace(new RegExp(`^${k}:.*\\n`, 'm'), '');
    text += `${k}: ${v}\n`;
  }
  writeFileSync(configPath(root), text);
}

/** A state record as the hook writes it. */
export function record(domain: string, address: string, originalDriver: string | null, extra: object = {}) {
  return {
    domain,
    address,
    originalDriver,
    bootId: null,
    phase: 'detached',
    since: '2026-01-01T00:00:00.000Z',
    entry: 'gpu',
    ...extra,
  };
}

export function writeState(root: string, records: object[], file = statePath(root)): void {
  writeFileSync(file, JSON.stringify({ version: 1, records }));
}
