// A fixture host installed with `install.sh --root`, as the e2e tests give it to a real libvirtd:
// the hook it installs reads everything below the root and moves only the fixture's driver links.
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RunResult, run } from '../harness/index.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const INSTALL_SH = join(REPO, 'install.sh');

export type FixtureHostName = 'workstation' | 'workstation-moved' | 'twin-gpus' | 'shared-group';

export interface HostCopy {
  /** Temp folder holding the root and whatever else a test writes (removed by cleanup). */
  readonly work: string;
  /** The folder given to `install.sh --root`. */
  readonly root: string;
  /** root/etc/libvirt: the private libvirtd's /etc/libvirt. */
  readonly etcLibvirt: string;
  readonly hooksDir: string;
  readonly hookFile: string;
  /** Where per-VM scripts go: root/etc/libvirt/hooks/qemu.d. */
  readonly scriptsDir: string;
  readonly configFile: string;
  readonly stateFile: string;
  readonly hookLog: string;
  readonly scriptLog: string;
  /** One JSON line per binding the fixture driver control changed (it alone writes this file). */
  readonly journal: string;
  readonly preferredDrivers: string;
  cleanup(): void;
}

/**
 * A private copy of a fixture host (symlink trees, copied as they are). The fixture's own domain
 * definitions are left out: the private libvirtd would load them as its domains.
 */
export function copyFixtureHost(name: FixtureHostName): HostCopy {
  if (!existsSync(join(REPO, 'dist/cli/main.cjs'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  }
  const work = mkdtempSync(join(tmpdir(), `qemu-hook-e2e-${name}-`));
  const root = join(work, 'root');
  cpSync(join(REPO, 'fixtures/hosts', name), root, { recursive: true, verbatimSymlinks: true });
  const definitions = join(root, 'etc/libvirt/qemu');
  for (const f of existsSync(definitions) ? readdirSync(definitions) : []) rmSync(join(definitions, f));
  const etcLibvirt = join(root, 'etc/libvirt');
  const hooksDir = join(etcLibvirt, 'hooks');
  return {
    work,
    root,
    etcLibvirt,
    hooksDir,
    hookFile: join(hooksDir, 'qemu'),
    scriptsDir: join(hooksDir, 'qemu.d'),
    configFile: join(root, 'etc/qemu-hook/config.yaml'),
    stateFile: join(root, 'var/lib/qemu-hook/state.json'),
    hookLog: join(root, 'var/log/libvirt/qemu-hook.log'),
    scriptLog: join(root, 'var/log/libvirt/qemu-hook-scripts.log'),
    journal: join(root, 'var/lib/qemu-hook-fixture/driver-calls.jsonl'),
    preferredDrivers: join(root, 'var/lib/qemu-hook-fixture/preferred-drivers.json'),
    cleanup: () => rmSync(work, { recursive: true, force: true }),
  };
}

/** `install.sh --root <root> --no-build [args]`, as root would run it (dist/ is already built). */
export function runInstall(root: string, ...args: string[]): Promise<RunResult> {
  return run('sh', [INSTALL_SH, '--root', root, '--no-build', ...args], { timeoutMs: 120_000 });
}

export async function installOk(root: string, ...args: string[]): Promise<string> {
  const r = await runInstall(root, ...args);
  if (r.code !== 0) throw new Error(`install.sh ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The value of one of the lines install.sh rewrites in the hook (`NODE=`, `ROOT=`, …). */
export function hookSetting(
  hookFile: string,
  name: 'NODE' | 'PROGRAM' | 'ROOT' | 'CHAIN',
): string | undefined {
  const m = new RegExp(`^${name}='([^']*)'\\s+# qemu-hook:`, 'm').exec(readFileSync(hookFile, 'utf8'));
  return m?.[1];
}

/** Driver bound to a fixture PCI device (the `driver` link's name), null when none. */
export function fixtureDriver(root: string, address: string): string | null {
  try {
    return basename(readlinkSync(join(root, 'sys/bus/pci/devices', address, 'driver')));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** address → driver of every PCI device of the fixture host. */
export function fixtureBindings(root: string): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const a of readdirSync(join(root, 'sys/bus/pci/devices')).sort()) out[a] = fixtureDriver(root, a);
  return out;
}

export interface StateRecordJson {
  domain: string;
  address: string;
  originalDriver: string | null;
  bootId: string | null;
  phase: string;
  entry: string;
}

/** The state file's records; none when the file does not exist (the hook never wrote one). */
export function stateRecords(host: HostCopy): StateRecordJson[] {
  if (!existsSync(host.stateFile)) return [];
  return (JSON.parse(readFileSync(host.stateFile, 'utf8')) as { records: StateRecordJson[] }).records;
}

export interface JournalEntry {
  op: 'detach' | 'reattach' | 'bindDriver' | 'unbind';
  address: string;
  from: string | null;
  to: string | null;
}

export function driverJournal(host: HostCopy): JournalEntry[] {
  return jsonLines<JournalEntry>(host.journal);
}

/** The hook's pino log, one object per line (`msg`, `domain`, `op`, …). */
export type HookLogLine = Record<string, unknown> & { msg?: string; domain?: string; op?: string };

export function hookLog(host: HostCopy): HookLogLine[] {
  return jsonLines<HookLogLine>(host.hookLog);
}

function jsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

export function writeConfig(host: HostCopy, yaml: string): void {
  mkdirSync(dirname(host.configFile), { recursive: true });
  writeFileSync(host.configFile, yaml, { mode: 0o644 });
}

/** The driver the simulated kernel picks on a reprobe; null: it binds none. */
export function setPreferredDriver(host: HostCopy, address: string, driver: string | null): void {
  const current = existsSync(host.preferredDrivers)
    ? (JSON.parse(readFileSync(host.preferredDrivers, 'utf8')) as Record<string, string | null>)
    : {};
  if (driver === null) delete current[address];
  else current[address] = driver;
  mkdirSync(dirname(host.preferredDrivers), { recursive: true });
  writeFileSync(host.preferredDrivers, `${JSON.stringify(current, null, 2)}\n`);
}

/**
 * A per-VM script below qemu.d, as the hook demands it: owned by root (the tests run as root),
 * neither it nor a folder up to qemu.d writable by group or others, whatever the umask.
 */
export function writeVmScript(host: HostCopy, relPath: string, body: string, mode = 0o755): string {
  const path = join(host.scriptsDir, relPath);
  const made: string[] = [];
  for (let d = dirname(path); !existsSync(d); d = dirname(d)) made.push(d);
  mkdirSync(dirname(path), { recursive: true });
  for (const d of made) chmodSync(d, 0o755);
  writeFileSync(path, body);
  chmodSync(path, mode);
  return path;
}

export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
