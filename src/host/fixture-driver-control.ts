import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  statfsSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { HostError, InvariantError, UsageError } from '../model/errors.js';
import type { PciAddress } from '../model/pci-address.js';
import type { DriverControl } from '../model/ports.js';
import { reconcile } from './handover/fixture-kernel.js';

export type DriverOp = 'detach' | 'reattach' | 'bindDriver' | 'unbind';

/**
 * Make a call fail, before it changes anything, as a libvirt error would: the `call`-th call
 * (1-based) of `op` (of any operation when `op` is omitted), and/or every call for `address`.
 */
export interface InjectedFailure {
  readonly op?: DriverOp;
  readonly call?: number;
  readonly address?: string;
}

export interface FixtureDriverControlOptions {
  readonly failures?: readonly InjectedFailure[];
}

/** Fixture-only files, beside the host's own state under `<root>/var/lib`. */
const FIXTURE_DIR = 'var/lib/qemu-hook-fixture';
/** address → the driver the simulated kernel binds on a reprobe; absent → it binds none. */
export const PREFERRED_DRIVERS_FILE = `${FIXTURE_DIR}/preferred-drivers.json`;
/** InjectedFailure[]: how a test reaches a hook that runs in another process (libvirt clears the environment). */
export const FAULTS_FILE = `${FIXTURE_DIR}/faults.json`;
/** One JSON line per call that changed a binding: { op, address, from, to }. */
export const JOURNAL_FILE = `${FIXTURE_DIR}/driver-calls.jsonl`;

const DRIVER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const SYSFS_MAGIC = 0x62656572;

/**
 * DriverControl over a fixture host: moves the `driver` links of `<root>/sys` the way the kernel
 * would, and touches nothing outside `root`. libvirt's detach (driver_override = vfio-pci, unbind,
 * probe) and reattach (clear driver_override, unbind, probe: the kernel picks the driver) are
 * simulated; the kernel's pick comes from PREFERRED_DRIVERS_FILE.
 */
export class FixtureDriverControl implements DriverControl {
  private readonly root: string;
  private readonly sys: string;
  private readonly counts = new Map<DriverOp | '*', number>();
  private readonly failures: readonly InjectedFailure[];

  constructor(root: string, options: FixtureDriverControlOptions = {}) {
    let real: string;
    try {
      real = realpathSync(root);
    } catch (err) {
      throw HostError.from('open fixture root', root, err);
    }
    if (real === sep)
      throw new InvariantError(`refusing to simulate driver changes on "${root}": it is the real root`);
    const sys = join(real, 'sys');
    let sysReal: string;
    try {
      sysReal = realpathSync(sys);
    } catch (err) {
      throw HostError.from('open fixture sysfs', sys, err);
    }
    // A sys/ that leads out of the fixture, or a real sysfs mounted there, is never written.
    if (sysReal !== sys || statfsSync(sysReal).type === SYSFS_MAGIC) {
      throw new InvariantError(
        `refusing to simulate driver changes on "${root}": its sys/ is not a fixture tree`,
      );
    }
    this.root = real;
    this.sys = sys;
    this.failures = [
      ...(options.failures ?? []),
      ...readJson<InjectedFailure[]>(join(real, FAULTS_FILE), []),
    ];
  }

  async currentDriver(address: PciAddress): Promise<string | null> {
    return this.driverOf(this.deviceDir(address, 'read driver of'));
  }

  async detach(address: PciAddress): Promise<void> {
    this.count('detach', address);
    const dev = this.deviceDir(address, 'detach');
    const from = this.driverOf(dev);
    if (from === 'vfio-pci') return;
    // libvirt leaves driver_override set to vfio-pci after a detach.
    this.writeAttr(dev, 'driver_override', 'vfio-pci');
    this.unlinkDriver(dev, address);
    this.bind(dev, address, 'vfio-pci', true);
    this.journal('detach', address, from, 'vfio-pci');
  }

  async reattach(address: PciAddress): Promise<void> {
    this.count('reattach', address);
    const dev = this.deviceDir(address, 'reattach');
    const from = this.driverOf(dev);
    this.writeAttr(dev, 'driver_override', '(null)');
    // libvirt only unbinds from its stub driver; a device on a host driver stays there.
    if (from !== null && from !== 'vfio-pci') return;
    this.unlinkDriver(dev, address);
    const preferred = readJson<Record<string, string | null>>(join(this.root, PREFERRED_DRIVERS_FILE), {});
    const to = preferred[address.toString()] ?? null;
    if (to !== null) this.bind(dev, address, checkedDriver(to), true);
    this.journal('reattach', address, from, to);
  }

  async bindDriver(address: PciAddress, driver: string): Promise<void> {
    this.count('bindDriver', address);
    checkedDriver(driver);
    const dev = this.deviceDir(address, 'bind driver of');
    const from = this.driverOf(dev);
    if (from === driver) return;
    this.writeAttr(dev, 'driver_override', driver);
    this.unlinkDriver(dev, address);
    // drivers_probe binds only a loaded driver: one whose folder exists. Otherwise none, as on a real host.
    const bound = this.bind(dev, address, driver, false);
    this.writeAttr(dev, 'driver_override', '(null)');
    this.journal('bindDriver', address, from, bound ? driver : null);
  }

  async unbind(address: PciAddress): Promise<void> {
    this.count('unbind', address);
    const dev = this.deviceDir(address, 'unbind');
    const from = this.driverOf(dev);
    if (from === null) return;
    this.unlinkDriver(dev, address);
    this.journal('unbind', address, from, null);
  }

  /** The device's folder (the target of sys/bus/pci/devices/<addr>), checked to be inside the fixture. */
  private deviceDir(address: PciAddress, operation: string): string {
    const link = join(this.sys, 'bus/pci/devices', address.toString());
    let dir: string;
    try {
      dir = realpathSync(link);
    } catch (err) {
      throw HostError.from(`${operation} PCI device`, link, err);
    }
    this.assertInside(dir);
    return dir;
  }

  private driverOf(dev: string): string | null {
    try {
      return basename(readlinkSync(join(dev, 'driver')));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw HostError.from('read driver link', join(dev, 'driver'), err);
    }
  }

  private unlinkDriver(dev: string, address: PciAddress): void {
    const driver = this.driverOf(dev);
    if (driver === null) return;
    this.remove(join(this.sys, 'bus/pci/drivers', driver, address.toString()));
    this.remove(join(dev, 'driver'));
  }

  /** Links the device to `driver`; creates the driver's folder when `load` (modprobe), else needs it. */
  private bind(dev: string, address: PciAddress, driver: string, load: boolean): boolean {
    const driverDir = join(this.sys, 'bus/pci/drivers', driver);
    if (!existsSync(driverDir)) {
      if (!load) return false;
      this.assertInside(driverDir);
      mkdirSync(driverDir, { recursive: true });
      for (const f of ['bind', 'unbind', 'new_id', 'remove_id']) writeFileSync(join(driverDir, f), '');
    }
    this.link(join(driverDir, address.toString()), dev);
    this.link(join(dev, 'driver'), driverDir);
    return true;
  }

  /** Creates or atomically replaces a relative symlink, as sysfs stores them. */
  private link(path: string, target: string): void {
    this.assertInside(path);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      symlinkSync(relative(dirname(path), target), tmp);
      renameSync(tmp, path);
    } catch (err) {
      throw HostError.from('link', path, err);
    }
  }

  private remove(path: string): void {
    this.assertInside(path);
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw HostError.from('unlink', path, err);
    }
  }

  private writeAttr(dev: string, name: string, value: string): void {
    const path = join(dev, name);
    this.assertInside(path, true);
    try {
      writeFileSync(path, `${value}\n`);
    } catch (err) {
      throw HostError.from('write', path, err);
    }
  }

  /**
   * Every write goes through here: its folder must resolve inside the fixture root, never to a
   * real /sys; with `follow` (a write through the path) so must the path itself.
   */
  private assertInside(path: string, follow = false): void {
    let dir = dirname(path);
    while (!existsSync(dir)) dir = dirname(dir);
    const targets = [realpathSync(dir)];
    if (follow && existsSync(path)) targets.push(realpathSync(path));
    for (const real of targets) {
      if (real !== this.root && !real.startsWith(this.root + sep)) {
        throw new InvariantError(`refusing to write ${path}: it leads out of the fixture root ${this.root}`);
      }
    }
  }

  private count(op: DriverOp, address: PciAddress): void {
    const n = (this.counts.get(op) ?? 0) + 1;
    const all = (this.counts.get('*') ?? 0) + 1;
    this.counts.set(op, n);
    this.counts.set('*', all);
    const hit = this.failures.some(
      (f) =>
        (f.op === undefined || f.op === op) &&
        (f.call === undefined || f.call === (f.op === undefined ? all : n)) &&
        (f.address === undefined || f.address === address.toString()) &&
        (f.call !== undefined || f.address !== undefined),
    );
    if (hit) {
      throw new HostError(
        op,
        join(this.sys, 'bus/pci/devices', address.toString()),
        'EIO',
        'injected failure (fixture)',
      );
    }
  }

  private journal(op: DriverOp, address: PciAddress, from: string | null, to: string | null): void {
    // A hand-over fixture's simulated kernel: the GPU's DRM nodes, fb and fbcon follow its driver.
    reconcile(this.root);
    const path = join(this.root, JOURNAL_FILE);
    this.assertInside(path, true);
    mkdirSync(dirname(path), { recursive: true });
    appendFileSync(path, `${JSON.stringify({ op, address: address.toString(), from, to })}\n`);
  }
}

function checkedDriver(driver: string): string {
  if (!DRIVER_NAME.test(driver)) throw new UsageError(`"${driver}" is not a kernel driver name`);
  return driver;
}

function readJson<T>(path: string, fallback: T): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw HostError.from('parse', path, err);
  }
}
