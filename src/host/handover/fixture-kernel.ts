import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { HostError, InvariantError } from '../../model/errors.js';
import type { KernelWriter } from '../../model/ports.js';
import { linkName, listDir, readlinkOrNull, readSmall } from '../sysfs/sysfs-files.js';

// A simulated kernel for the hand-over's writes on a fixture host, so ordering, rollback and
// crash recovery are tested without a GPU. It keeps the fixture's sys/ and proc/ true to what a
// kernel would show after each write (reconcile()):
//   - a GPU's DRM nodes and fb exist while it is bound to its driver and the modules that provide
//     them are loaded; a firmware framebuffer's fb exists while its platform device is bound;
//   - fbcon's vtcon vanishes with the last fb and comes back bound with the first one;
//   - a module cannot be removed while its refcount (processes holding its nodes, dependent
//     modules) is above 0: EAGAIN;
//   - a gone platform device answers ENODEV; listed writes never return (`hang`) or fail (`fail`).
// Its description is var/lib/qemu-hook-fixture/kernel.json (written by scripts/fixtures).

export const FIXTURE_DIR = 'var/lib/qemu-hook-fixture';
export const KERNEL_FILE = `${FIXTURE_DIR}/kernel.json`;
export const HANDOVER_JOURNAL = `${FIXTURE_DIR}/handover-calls.jsonl`;

export interface FixtureNode {
  readonly name: string;
  /** "226:0". */
  readonly dev: string;
}

export interface FixtureKernelDescription {
  /** The GPU's VGA function: whose outputs appear and vanish. */
  readonly gpu: string;
  readonly outputs: {
    readonly drm: readonly FixtureNode[];
    readonly fb: (FixtureNode & { id: string }) | null;
  };
  /** Modules that must be loaded for the outputs to exist (amdgpu; nvidia_drm). */
  readonly outputModules: readonly string[];
  /** Module → the PCI driver it registers (amdgpu → amdgpu, nvidia → nvidia). */
  readonly drivers: Readonly<Record<string, string>>;
  /** Module → the modules it needs (modprobe loads them first; each lists it among its holders). */
  readonly deps?: Readonly<Record<string, readonly string[]>>;
  /** Module → /dev paths whose holders count in its refcount. */
  readonly users: Readonly<Record<string, readonly string[]>>;
  readonly firmwareFb: {
    readonly device: string;
    readonly driver: string;
    readonly fb: FixtureNode & { id: string };
  } | null;
  /** fbcon's vtcon name. */
  readonly fbcon: string;
  /** "<op>" or "<op>:<arg>" (e.g. "unloadModule:nvidia", "bindVtcon:0"): the write never returns. */
  readonly hang?: readonly string[];
  /** Platform devices the native driver unregisters just before our unbind: it answers ENODEV. */
  readonly gone?: readonly string[];
  /** "<op>[:<arg>]" → errno code: the write fails with it. */
  readonly fail?: Readonly<Record<string, string>>;
}

export function readKernelDescription(root: string): FixtureKernelDescription | null {
  try {
    return JSON.parse(readFileSync(join(root, KERNEL_FILE), 'utf8')) as FixtureKernelDescription;
  } catch {
    return null;
  }
}

/** KernelWriter over a fixture host. Refuses any root that is not a fixture tree. */
export class FixtureKernel implements KernelWriter {
  private readonly root: string;

  constructor(root: string) {
    this.root = fixtureRoot(root);
  }

  async bindVtcon(vtcon: string, bind: boolean): Promise<void> {
    await this.gate('bindVtcon', bind ? '1' : '0');
    const dir = join(this.root, 'sys/class/vtconsole', vtcon);
    if (!existsSync(dir)) throw errno('ENOENT', `write ${dir}/bind`);
    writeInside(this.root, join(dir, 'bind'), bind ? '1\n' : '0\n');
    this.journal({ op: 'bindVtcon', vtcon, bind });
  }

  async unbindPlatform(device: string, driver: string): Promise<void> {
    await this.gate('unbindPlatform', device);
    const link = join(this.root, 'sys/bus/platform/devices', device);
    if (readKernelDescription(this.root)?.gone?.includes(device) && existsSync(link)) {
      // Aperture takeover: platform_device_unregister() of the firmware fb, with its fb.
      const dir = realpathSync(link);
      for (const fb of listDir(join(dir, 'graphics')) ?? []) {
        removeInside(this.root, join(this.root, 'sys/class/graphics', fb));
        setProcFb(this.root, fb, null);
      }
      removeInside(this.root, link);
      removeInside(this.root, join(this.root, 'sys/bus/platform/drivers', driver, device));
      removeInside(this.root, dir);
      reconcile(this.root);
    }
    if (!existsSync(link)) throw errno('ENODEV', `write sys/bus/platform/drivers/${driver}/unbind`);
    removeInside(this.root, join(realpathSync(link), 'driver'));
    removeInside(this.root, join(this.root, 'sys/bus/platform/drivers', driver, device));
    this.journal({ op: 'unbindPlatform', device, driver });
    reconcile(this.root);
  }

  async bindPlatform(device: string, driver: string): Promise<void> {
    await this.gate('bindPlatform', device);
    const link = join(this.root, 'sys/bus/platform/devices', device);
    if (!existsSync(link)) throw errno('ENODEV', `write sys/bus/platform/drivers/${driver}/bind`);
    const dev = realpathSync(link);
    const drv = join(this.root, 'sys/bus/platform/drivers', driver);
    mkdirSync(drv, { recursive: true });
    linkInside(this.root, join(dev, 'driver'), drv);
    linkInside(this.root, join(drv, device), dev);
    this.journal({ op: 'bindPlatform', device, driver });
    reconcile(this.root);
  }

  async unloadModule(name: string): Promise<void> {
    await this.gate('unloadModule', name);
    const dir = join(this.root, 'sys/module', name);
    if (!existsSync(dir)) throw errno('ENOENT', `delete_module ${name}`);
    if (!existsSync(join(dir, 'refcnt'))) throw errno('EPERM', `delete_module ${name} (built in)`);
    const users = moduleUsers(this.root, name);
    if (users > 0) throw errno('EAGAIN', `delete_module ${name} (refcnt ${users})`);
    // Kept so a reload finds its files (parameters, holders) as they were.
    const kept = join(this.root, FIXTURE_DIR, 'unloaded-modules', name);
    rmSync(kept, { recursive: true, force: true });
    mkdirSync(dirname(kept), { recursive: true });
    renameSync(dir, kept);
    for (const other of listDir(join(this.root, 'sys/module')) ?? [])
      rmSync(join(this.root, 'sys/module', other, 'holders', name), { force: true });
    const driver = readKernelDescription(this.root)?.drivers[name];
    if (driver) unbindAll(this.root, driver);
    this.journal({ op: 'unloadModule', name });
    reconcile(this.root);
  }

  async loadModule(name: string, parameters: Readonly<Record<string, string>>): Promise<void> {
    await this.gate('loadModule', name);
    const dir = join(this.root, 'sys/module', name);
    this.journal({ op: 'loadModule', name, parameters });
    if (existsSync(dir)) return;
    const kept = join(this.root, FIXTURE_DIR, 'unloaded-modules', name);
    if (!existsSync(kept)) throw errno('ENOENT', `modprobe ${name} (no such module in this fixture)`);
    const desc = readKernelDescription(this.root);
    for (const dep of desc?.deps?.[name] ?? []) {
      if (!existsSync(join(this.root, 'sys/module', dep))) await this.loadModule(dep, {});
      linkInside(this.root, join(this.root, 'sys/module', dep, 'holders', name), dir);
    }
    renameSync(kept, dir);
    for (const [k, v] of Object.entries(parameters))
      writeInside(this.root, join(dir, 'parameters', k), `${v}\n`);
    const driver = desc?.drivers[name];
    if (driver) probeDriver(this.root, driver);
    reconcile(this.root);
  }

  private async gate(op: string, arg: string): Promise<void> {
    const desc = readKernelDescription(this.root);
    const keys = [op, `${op}:${arg}`];
    if (desc?.hang?.some((h) => keys.includes(h))) {
      this.journal({ op, arg, hang: true });
      await new Promise<never>(() => {});
    }
    const code = keys.map((k) => desc?.fail?.[k]).find(Boolean);
    if (code) throw errno(code, `${op} ${arg} (injected)`);
  }

  private journal(entry: object): void {
    const path = join(this.root, HANDOVER_JOURNAL);
    mkdirSync(dirname(path), { recursive: true });
    appendFileSync(path, `${JSON.stringify(entry)}\n`);
  }
}

/** Processes holding the module's nodes, plus modules that depend on it. */
export function moduleUsers(root: string, name: string): number {
  const desc = readKernelDescription(root);
  const paths = new Set(desc?.users[name] ?? []);
  let n = (listDir(join(root, 'sys/module', name, 'holders')) ?? []).filter((h) => !h.startsWith('.')).length;
  if (paths.size === 0) return n;
  for (const pid of listDir(join(root, 'proc')) ?? []) {
    if (!/^\d+$/.test(pid)) continue;
    const fds = listDir(join(root, 'proc', pid, 'fd')) ?? [];
    for (const fd of fds) {
      // fd links point at absolute /dev paths outside the fixture: read the text, never follow it.
      const target = readlinkOrNull(join(root, 'proc', pid, 'fd', fd));
      if (target && paths.has(target)) n++;
    }
  }
  return n;
}

/**
 * Makes sys/ and proc/fb show what the kernel would after a change: the GPU's outputs while it is
 * bound to a host driver and every output module is loaded, the firmware fb while it is bound,
 * fbcon while any fb exists (registered again bound). Called by the fixture's driver control too.
 */
export function reconcile(root: string): void {
  const desc = readKernelDescription(root);
  if (!desc) return;
  const sys = join(root, 'sys');
  const gpuDir = realpathOrNull(join(sys, 'bus/pci/devices', desc.gpu));
  if (!gpuDir) return;
  const driver = linkName(join(gpuDir, 'driver'));
  const modulesUp = desc.outputModules.every((m) => existsSync(join(sys, 'module', m)));
  const want = driver !== null && driver !== 'vfio-pci' && modulesUp;
  for (const n of desc.outputs.drm) {
    setNode(root, gpuDir, 'drm', n, want);
  }
  if (desc.outputs.fb) setNode(root, gpuDir, 'graphics', desc.outputs.fb, want, desc.outputs.fb.id);
  if (desc.firmwareFb) {
    const fw = realpathOrNull(join(sys, 'bus/platform/devices', desc.firmwareFb.device));
    if (fw) {
      const bound = linkName(join(fw, 'driver')) !== null;
      setNode(root, fw, 'graphics', desc.firmwareFb.fb, bound, desc.firmwareFb.fb.id);
    }
  }
  const anyFb = (listDir(join(sys, 'class/graphics')) ?? []).some((n) => /^fb\d+$/.test(n));
  const vtconsDir = join(sys, 'class/vtconsole');
  const fbcon = (listDir(vtconsDir) ?? []).find((v) => {
    try {
      return readSmall(join(vtconsDir, v, 'name')) === desc.fbcon;
    } catch {
      return false;
    }
  });
  if (!anyFb && fbcon) {
    // fbcon_fb_unregistered(): with no fb left, fbcon unregisters its console driver.
    removeInside(root, join(sys, 'devices/virtual/vtconsole', fbcon));
    removeInside(root, join(vtconsDir, fbcon));
  } else if (anyFb && !fbcon) {
    const taken = new Set(listDir(vtconsDir) ?? []);
    let i = 1;
    while (taken.has(`vtcon${i}`)) i++;
    const dir = join(sys, 'devices/virtual/vtconsole', `vtcon${i}`);
    writeInside(root, join(dir, 'name'), `${desc.fbcon}\n`);
    writeInside(root, join(dir, 'bind'), '1\n');
    linkInside(root, join(vtconsDir, `vtcon${i}`), dir);
  }
}

function setNode(
  root: string,
  deviceDir: string,
  subdir: 'drm' | 'graphics',
  node: FixtureNode,
  present: boolean,
  fbId?: string,
): void {
  const dir = join(deviceDir, subdir, node.name);
  const classLink = join(root, 'sys/class', subdir, node.name);
  if (present && !existsSync(dir)) {
    writeInside(root, join(dir, 'dev'), `${node.dev}\n`);
    linkInside(root, join(dir, 'device'), deviceDir);
    linkInside(root, classLink, dir);
    if (fbId) setProcFb(root, node.name, fbId);
  } else if (!present && existsSync(dir)) {
    removeInside(root, dir);
    removeInside(root, classLink);
    if (fbId) setProcFb(root, node.name, null);
  }
}

function setProcFb(root: string, fb: string, id: string | null): void {
  const path = join(root, 'proc/fb');
  let lines: string[] = [];
  try {
    lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
  } catch {
    lines = [];
  }
  const n = fb.slice(2);
  lines = lines.filter((l) => l.split(' ')[0] !== n);
  if (id) lines.push(`${n} ${id}`);
  lines.sort((a, b) => Number(a.split(' ')[0]) - Number(b.split(' ')[0]));
  writeInside(root, path, lines.length > 0 ? `${lines.join('\n')}\n` : '');
}

/** Every PCI device bound to `driver` loses it (its module went away), and the driver's folder goes. */
function unbindAll(root: string, driver: string): void {
  const drv = join(root, 'sys/bus/pci/drivers', driver);
  for (const name of listDir(drv) ?? []) {
    const dev = realpathOrNull(join(root, 'sys/bus/pci/devices', name));
    if (dev) removeInside(root, join(dev, 'driver'));
  }
  removeInside(root, drv);
}

/** A PCI driver registering probes every device without a driver that it claims (preferred-drivers.json). */
function probeDriver(root: string, driver: string): void {
  let preferred: Record<string, string | null> = {};
  try {
    preferred = JSON.parse(readFileSync(join(root, FIXTURE_DIR, 'preferred-drivers.json'), 'utf8'));
  } catch {
    preferred = {};
  }
  const drv = join(root, 'sys/bus/pci/drivers', driver);
  if (!existsSync(drv)) {
    mkdirSync(drv, { recursive: true });
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id']) writeInside(root, join(drv, f), '');
  }
  for (const [address, want] of Object.entries(preferred)) {
    if (want !== driver) continue;
    const dev = realpathOrNull(join(root, 'sys/bus/pci/devices', address));
    if (!dev || linkName(join(dev, 'driver')) !== null) continue;
    let override = '(null)';
    try {
      override = readSmall(join(dev, 'driver_override')).trim();
    } catch {
      override = '(null)';
    }
    if (override !== '(null)' && override !== '' && override !== driver) continue;
    linkInside(root, join(dev, 'driver'), drv);
    linkInside(root, join(drv, address), dev);
  }
}

// --- fixture-only file helpers: every write is checked to stay inside the fixture root ---------

const SYSFS_MAGIC = 0x62656572;
const PROC_MAGIC = 0x9fa0;

export function fixtureRoot(root: string): string {
  let real: string;
  try {
    real = realpathSync(root);
  } catch (err) {
    throw HostError.from('open fixture root', root, err);
  }
  // A root whose sys/ or proc/ is the kernel's own (a bind mount, a link out) is never written.
  const kernels = ['sys', 'proc'].map((d) => {
    try {
      const type = statfsSync(realpathSync(join(real, d))).type;
      return type === SYSFS_MAGIC || type === PROC_MAGIC;
    } catch {
      return false;
    }
  });
  if (real === sep || kernels.some(Boolean))
    throw new InvariantError(`refusing to simulate kernel writes on "${root}": it is not a fixture root`);
  if (!existsSync(join(real, FIXTURE_DIR)))
    throw new InvariantError(`refusing to simulate kernel writes on "${root}": it has no ${FIXTURE_DIR}`);
  return real;
}

function assertInside(root: string, path: string): void {
  let dir = dirname(path);
  while (!existsSync(dir)) dir = dirname(dir);
  const real = realpathSync(dir);
  if (real !== root && !real.startsWith(root + sep))
    throw new InvariantError(`refusing to write ${path}: it leads out of the fixture root ${root}`);
}

export function writeInside(root: string, path: string, content: string): void {
  assertInside(root, path);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

export function removeInside(root: string, path: string): void {
  assertInside(root, path);
  rmSync(path, { recursive: true, force: true });
}

export function linkInside(root: string, path: string, target: string): void {
  assertInside(root, path);
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  symlinkSync(relative(dirname(path), target), path);
}

export function moveInside(root: string, from: string, to: string): void {
  assertInside(root, from);
  assertInside(root, to);
  mkdirSync(dirname(to), { recursive: true });
  rmSync(to, { recursive: true, force: true });
  renameSync(from, to);
}

function realpathOrNull(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

export function errno(code: string, what: string): Error {
  return Object.assign(new Error(`${what}: ${code}`), { code });
}
