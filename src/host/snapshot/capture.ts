import {
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { HostPaths } from '../../model/paths.js';
import { FIXTURE_STATE_DIR, SNAPSHOT_STATE_DIR } from '../root-kind.js';
import { errnoCode } from '../sysfs/sysfs-files.js';
import { usedPciIds } from './pci-ids-subset.js';
import type { Redactor } from './redact.js';

// What the program reads from a host, copied into a folder laid out as a --root: the same tree,
// with only the attributes and links the readers use (sysfs holds thousands of other files).

// Attributes read by host/sysfs/pci-devices.ts (modalias first; the separate ids are its fallback).
const PCI_ATTRS = [
  'modalias',
  'vendor',
  'device',
  'subsystem_vendor',
  'subsystem_device',
  'class',
  'driver_override',
  'boot_vga',
  'sriov_totalvfs',
  'sriov_numvfs',
];
const PCI_LINKS = ['driver', 'iommu_group', 'physfn'];
// host/sysfs/usb-devices.ts
const USB_ATTRS = ['idVendor', 'idProduct', 'busnum', 'devnum', 'serial', 'manufacturer', 'product'];
const USB_DEVICE = /^\d+-\d+(?:\.\d+)*$/;
// The single-GPU hand-over: what drives the console and what holds the GPU.
const GRAPHICS_ATTRS = ['name', 'dev', 'bind', 'status', 'enabled', 'modalias', 'boot_vga'];
// The nodes a GPU (and its HDMI audio function) gives processes to hold.
const GPU_NODE = /^\/dev\/(?:dri\/|nvidia|fb\d|snd\/)/;
const GPU_MAPPING = /\s\/dev\/(?:dri\/|nvidia|fb\d|snd\/)/;
const PROC_FILES = [
  'mounts',
  'net/route',
  'net/ipv6_route',
  'iomem',
  'cmdline',
  'sys/kernel/hostname',
  'sys/kernel/random/boot_id',
  'fb',
];
/** A file larger than this is not an attribute (nor a config): left out and said so. */
const MAX_FILE = 4 * 1024 * 1024;

export interface CaptureReport {
  /** What was captured, by kind ("PCI devices" → 25). */
  readonly counts: Record<string, number>;
  /** Paths below the root that exist but could not be read, with the errno. */
  readonly unreadable: readonly string[];
  /** What the program would read but this host does not have (no config, no definitions). */
  readonly absent: readonly string[];
  readonly hostname: string | null;
}

export interface CaptureOptions {
  readonly paths: HostPaths;
  /** Absolute path of the state file on the host (from the config, under the root). */
  readonly stateFile: string;
  /** Where the copy goes (an empty private folder). */
  readonly stage: string;
  readonly redactor: Redactor | null;
}

export function captureHost(o: CaptureOptions): CaptureReport {
  return new Capture(o).run();
}

class Capture {
  private readonly counts: Record<string, number> = {};
  private readonly unreadable: string[] = [];
  private readonly absent: string[] = [];
  private readonly dirs = new Set<string>();
  private readonly root: string;

  constructor(private readonly o: CaptureOptions) {
    this.root = o.paths.root;
  }

  run(): CaptureReport {
    const hostname = this.readText('proc/sys/kernel/hostname', true)?.trim() || null;
    if (this.o.redactor) {
      if (hostname) this.o.redactor.hostname(hostname);
      // Serials first: every file written afterwards (config included) gets the same stand-ins.
      for (const name of (this.list('sys/bus/usb/devices') ?? []).filter((n) => USB_DEVICE.test(n))) {
        const serial = this.readText(`sys/bus/usb/devices/${name}/serial`, true)?.trim();
        if (serial) this.o.redactor.serial(serial);
      }
    }
    const pci = this.pci();
    this.net();
    this.block();
    this.usb();
    this.handover();
    for (const f of PROC_FILES) this.copyFile(`proc/${f}`, { optional: true, kind: 'proc files' });
    this.cpuinfo();
    // An active IOMMU lists its groups (host-support.ts); a group is a folder, its links are not read.
    for (const g of this.list('sys/kernel/iommu_groups') ?? []) this.mkdir(`sys/kernel/iommu_groups/${g}`);
    this.gpuHolders();
    this.configAndState();
    // Which display manager to stop (the hand-over reads the link's name).
    this.copyLink('etc/systemd/system/display-manager.service', true);
    this.pciIds(pci);
    return { counts: this.counts, unreadable: this.unreadable, absent: this.absent, hostname };
  }

  // --- PCI -----------------------------------------------------------------------------------

  /** Every PCI function: its link in bus/pci/devices, its folder, attributes and links. */
  private pci(): string[] {
    for (const name of this.list('sys/bus/pci/devices', 'PCI devices') ?? []) {
      const dir = this.copyLinkAndTarget(`sys/bus/pci/devices/${name}`);
      if (!dir) continue;
      this.count('PCI devices');
      for (const a of PCI_ATTRS) this.copyFile(`${dir}/${a}`, { optional: true });
      for (const l of PCI_LINKS) this.copyLinkAndTarget(`${dir}/${l}`, { optional: true, mkTarget: true });
      for (const entry of this.list(dir) ?? []) {
        if (/^virtfn\d+$/.test(entry)) this.copyLink(`${dir}/${entry}`);
        if (entry === 'net') for (const n of this.list(`${dir}/net`) ?? []) this.mkdir(`${dir}/net/${n}`);
        if (entry === 'drm' || entry === 'graphics' || entry === 'sound') this.nodesOf(`${dir}/${entry}`);
      }
      this.copyFile(`proc/driver/nvidia/gpus/${name}/information`, { optional: true });
    }
    return this.list('sys/bus/pci/devices') ?? [];
  }

  /** Network interfaces (to tell which function provides which) and bridge/bond lower links. */
  private net(): void {
    for (const iface of this.list('sys/class/net') ?? []) {
      const dir = this.copyLinkAndTarget(`sys/class/net/${iface}`, { mkTarget: true });
      if (!dir) continue;
      this.count('network interfaces');
      for (const e of this.list(dir) ?? []) if (e.startsWith('lower_')) this.copyLink(`${dir}/${e}`);
    }
  }

  /** Block devices, to find the root filesystem's disk controller (device-mapper through slaves). */
  private block(): void {
    for (const b of this.list('sys/class/block') ?? []) {
      const dir = this.copyLinkAndTarget(`sys/class/block/${b}`, { mkTarget: true });
      if (!dir) continue;
      this.count('block devices');
      this.copyFile(`${dir}/dm/name`, { optional: true });
      for (const s of this.list(`${dir}/slaves`) ?? []) this.copyLink(`${dir}/slaves/${s}`);
    }
  }

  private usb(): void {
    for (const name of this.list('sys/bus/usb/devices') ?? []) {
      const dir = this.copyLinkAndTarget(`sys/bus/usb/devices/${name}`, { mkTarget: true });
      if (!dir || !USB_DEVICE.test(name)) continue;
      this.count('USB devices');
      for (const a of USB_ATTRS) this.copyFile(`${dir}/${a}`, { optional: true });
    }
  }

  /** The `dev` (major:minor) of a function's drm cards, framebuffers and sound nodes. */
  private nodesOf(dir: string): void {
    const sound = dir.endsWith('/sound');
    for (const e of this.list(dir) ?? []) {
      if (!sound && /^(card|renderD|fb)\d+$/.test(e)) this.copyFile(`${dir}/${e}/dev`, { optional: true });
      else if (sound && /^card\d+$/.test(e)) {
        for (const n of this.list(`${dir}/${e}`) ?? [])
          if (/^(controlC|pcmC|hwC|midiC)\d/.test(n))
            this.copyFile(`${dir}/${e}/${n}/dev`, { optional: true });
      }
    }
  }

  /**
   * GPU device nodes as the fixture hosts describe them: a file holding "major:minor" (a replay
   * matches what processes hold by it). On a fixture or a replayed snapshot they are such files already.
   */
  private devNodes(): void {
    const wanted = (rel: string) => /^dev\/(?:dri\/[^/]+|fb\d+|nvidia[^/]*|snd\/[^/]+)$/.test(rel);
    const names = [
      ...(this.list('dev') ?? []).map((n) => `dev/${n}`),
      ...(this.list('dev/dri') ?? []).map((n) => `dev/dri/${n}`),
      ...(this.list('dev/snd') ?? []).map((n) => `dev/snd/${n}`),
    ].filter(wanted);
    for (const rel of names) {
      const abs = join(this.root, rel);
      try {
        const st = statSync(abs, { bigint: true });
        if (st.isCharacterDevice()) {
          const dev = st.rdev;
          const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
          const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
          this.write(rel, `${major}:${minor}\n`, false);
        } else if (st.isFile()) this.copyFile(rel, {});
        else continue;
        this.count('GPU device nodes');
      } catch (err) {
        this.fail(rel, err);
      }
    }
  }

  // --- single-GPU hand-over ------------------------------------------------------------------

  private handover(): void {
    for (const cls of ['graphics', 'drm', 'vtconsole']) {
      for (const e of this.list(`sys/class/${cls}`) ?? []) {
        const dir = this.copyLinkAndTarget(`sys/class/${cls}/${e}`, { mkTarget: true });
        if (!dir) continue;
        this.count(`${cls} entries`);
        for (const a of GRAPHICS_ATTRS) this.copyFile(`${dir}/${a}`, { optional: true });
        this.copyLinkAndTarget(`${dir}/device`, { optional: true, mkTarget: true });
      }
    }
    this.devNodes();
    for (const e of this.list('sys/bus/platform/devices') ?? []) {
      if (!/framebuffer|simplefb|simpledrm|efifb|vesafb/i.test(e)) continue;
      const dir = this.copyLinkAndTarget(`sys/bus/platform/devices/${e}`, { mkTarget: true });
      if (!dir) continue;
      this.count('platform framebuffers');
      this.copyLinkAndTarget(`${dir}/driver`, { optional: true, mkTarget: true });
      this.copyFile(`${dir}/modalias`, { optional: true });
      this.nodesOf(`${dir}/graphics`);
    }
    for (const m of this.list('sys/module') ?? []) {
      const dir = `sys/module/${m}`;
      const refcnt = this.copyFile(`${dir}/refcnt`, { optional: true });
      const holders = this.list(`${dir}/holders`);
      if (refcnt === null && !holders) continue; // built in: nothing that can be unloaded
      this.count('modules');
      this.mkdir(`${dir}/holders`);
      for (const h of holders ?? []) if (!h.startsWith('.')) this.copyLink(`${dir}/holders/${h}`);
      for (const p of this.list(`${dir}/parameters`) ?? [])
        this.copyFile(`${dir}/parameters/${p}`, { optional: true });
    }
  }

  /** Processes holding a GPU node (/dev/dri/*, /dev/nvidia*, /dev/fb*): what the hand-over would stop. */
  private gpuHolders(): void {
    for (const pid of this.list('proc') ?? []) {
      if (!/^\d+$/.test(pid)) continue;
      const fds = listQuiet(join(this.root, 'proc', pid, 'fd'));
      if (!fds) continue; // another user's process, or gone
      const held = fds.filter((fd) =>
        GPU_NODE.test(readlinkQuiet(join(this.root, 'proc', pid, 'fd', fd)) ?? ''),
      );
      // Every process's maps are looked at; one that cannot be read (another user's) holds nothing we can tell.
      const maps = readQuiet(join(this.root, 'proc', pid, 'maps'));
      // Only the GPU mappings: a browser's full map is hundreds of kilobytes.
      const gpuMaps = (maps ?? '').split('\n').filter((l) => GPU_MAPPING.test(l));
      if (held.length === 0 && gpuMaps.length === 0) continue;
      this.count('processes holding a GPU node');
      // fd links name /dev paths and are only ever read, never followed: kept absolute.
      for (const fd of held) this.copyLink(`proc/${pid}/fd/${fd}`, false, true);
      for (const f of ['comm', 'cmdline', 'cgroup']) this.copyFile(`proc/${pid}/${f}`, { optional: true });
      this.write(`proc/${pid}/maps`, gpuMaps.join('\n') + (gpuMaps.length ? '\n' : ''));
    }
  }

  /** The first processor's block: the CPU vendor names the IOMMU option to suggest. */
  private cpuinfo(): void {
    const text = this.readText('proc/cpuinfo', true);
    if (text === null) return;
    this.write('proc/cpuinfo', `${text.split(/\n\s*\n/)[0]}\n`);
    this.count('proc files');
  }

  // --- files of the program ------------------------------------------------------------------

  private configAndState(): void {
    const { paths } = this.o;
    const config = this.readAbs(paths.configFile, 'the config');
    if (config !== null) {
      this.write('etc/qemu-hook/config.yaml', config);
      this.count('config');
    }
    for (const f of this.list(rel(this.root, paths.definitionsDir), 'domain definitions') ?? []) {
      if (!f.endsWith('.xml')) continue;
      if (this.copyFile(`${rel(this.root, paths.definitionsDir)}/${f}`, {}) !== null)
        this.count('domain definitions');
    }
    // libvirt's status files: which domains run now (a device held by a running VM is refused).
    for (const f of this.list('run/libvirt/qemu') ?? []) {
      if (f.endsWith('.xml') && this.copyFile(`run/libvirt/qemu/${f}`, {}) !== null)
        this.count('running domains');
    }
    // A fixture host's simulated kernel (drivers it prefers, services, modules): a snapshot of a
    // fixture replays as the fixture does. A real host has none.
    for (const f of this.list(FIXTURE_STATE_DIR) ?? [])
      if (/\.json$/.test(f)) this.copyFile(`${FIXTURE_STATE_DIR}/${f}`, {});
    // A snapshot of a snapshot keeps what the first one read of systemd and logind (the snapshot
    // command captures them anew wherever they can be asked).
    for (const f of this.list(SNAPSHOT_STATE_DIR) ?? [])
      if (/\.json$/.test(f)) this.copyFile(`${SNAPSHOT_STATE_DIR}/${f}`, {});
    const state = rel(this.root, this.o.stateFile);
    if (this.copyFile(state, { optional: true }) !== null) this.count('state file');
  }

  private pciIds(devices: readonly string[]): void {
    const ids: string[] = [];
    for (const name of devices) {
      const dir = this.resolveLink(`sys/bus/pci/devices/${name}`);
      if (!dir) continue;
      const modalias = this.readText(`${dir}/modalias`, true);
      const m = modalias && /^pci:v0000(\w{4})d0000(\w{4})sv0000(\w{4})sd0000(\w{4})/i.exec(modalias.trim());
      if (m) ids.push(`${m[1]} ${m[2]} ${m[3]} ${m[4]}`.toLowerCase());
      else {
        const v = ['vendor', 'device', 'subsystem_vendor', 'subsystem_device'].map(
          (a) => this.readText(`${dir}/${a}`, true)?.trim().replace(/^0x/i, '').toLowerCase() ?? '',
        );
        ids.push(v.join(' '));
      }
    }
    for (const candidate of this.o.paths.pciIdsCandidates) {
      let text: string;
      try {
        text = readFileSync(candidate, 'utf8');
      } catch {
        continue;
      }
      this.write('usr/share/misc/pci.ids', usedPciIds(text, ids), false);
      this.count('pci.ids entries', ids.length);
      return;
    }
  }

  // --- primitives ----------------------------------------------------------------------------

  private count(kind: string, n = 1): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + n;
  }

  private fail(path: string, err: unknown): void {
    if (errnoCode(err) === 'ENOENT') this.absent.push(path);
    else this.unreadable.push(`${path} (${errnoCode(err)})`);
  }

  /** Entries of a folder below the root; null when absent (said when `kind` is given) or unreadable. */
  private list(relPath: string, kind?: string): string[] | null {
    try {
      return readdirSync(join(this.root, relPath)).sort();
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' || kind) this.fail(relPath, err);
      return null;
    }
  }

  private readText(relPath: string, optional: boolean): string | null {
    try {
      const abs = join(this.root, relPath);
      if (statSync(abs).size > MAX_FILE) throw Object.assign(new Error('too large'), { code: 'EFBIG' });
      return readFileSync(abs, 'utf8');
    } catch (err) {
      if (!(optional && errnoCode(err) === 'ENOENT')) this.fail(relPath, err);
      return null;
    }
  }

  private readAbs(abs: string, what: string): string | null {
    try {
      return readFileSync(abs, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') this.absent.push(`${what} (${abs})`);
      else this.unreadable.push(`${what}: ${abs} (${errnoCode(err)})`);
      return null;
    }
  }

  /** Copies a file's content (as a regular file, even when it is reached through a link). */
  private copyFile(relPath: string, o: { optional?: boolean; kind?: string }): string | null {
    const text = this.readText(relPath, o.optional ?? false);
    if (text === null) return null;
    this.write(relPath, text);
    if (o.kind) this.count(o.kind);
    return text;
  }

  private write(relPath: string, text: string, redact = true): void {
    const r = this.o.redactor;
    const target = join(this.o.stage, r ? r.path(relPath) : relPath);
    this.mkdirAbs(dirname(target));
    writeFileSync(target, r && redact ? r.text(text) : text, { mode: 0o644 });
  }

  private mkdir(relPath: string): void {
    const r = this.o.redactor;
    this.mkdirAbs(join(this.o.stage, r ? r.path(relPath) : relPath));
  }

  private mkdirAbs(abs: string): void {
    if (this.dirs.has(abs)) return;
    mkdirSync(abs, { recursive: true, mode: 0o755 });
    this.dirs.add(abs);
  }

  /** Copies a symlink as it is written; returns its target relative to the root, null when absent. */
  private copyLink(relPath: string, optional = false, keepAbsolute = false): string | null {
    let target: string;
    try {
      target = readlinkSync(join(this.root, relPath));
    } catch (err) {
      if (!(optional && errnoCode(err) === 'ENOENT')) this.fail(relPath, err);
      return null;
    }
    if (target.startsWith('/') && keepAbsolute) return this.linkAt(relPath, target);
    // An absolute link (display-manager.service → /usr/lib/…) points into the same host: made
    // relative, so that it stays inside the snapshot's tree.
    if (target.startsWith('/')) target = posix.relative(posix.dirname(`/${relPath}`), target);
    const resolved = posix.normalize(posix.join(posix.dirname(relPath), target));
    // A link that leaves the root is not part of the host's tree: kept out.
    if (resolved.startsWith('..')) {
      this.unreadable.push(`${relPath} (link to ${target}, outside the tree)`);
      return null;
    }
    this.linkAt(relPath, target);
    return resolved;
  }

  private linkAt(relPath: string, target: string): null {
    const r = this.o.redactor;
    const at = join(this.o.stage, r ? r.path(relPath) : relPath);
    this.mkdirAbs(dirname(at));
    try {
      symlinkSync(target, at);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    return null;
  }

  /** A link and the folder it points at (created, empty, when `mkTarget`; its parents anyway). */
  private copyLinkAndTarget(
    relPath: string,
    o: { optional?: boolean; mkTarget?: boolean } = {},
  ): string | null {
    const target = this.copyLink(relPath, o.optional);
    if (target === null) return null;
    this.mkdir(o.mkTarget ? target : dirname(target));
    if (!o.mkTarget) this.mkdir(target);
    return target;
  }

  private resolveLink(relPath: string): string | null {
    const t = readlinkQuiet(join(this.root, relPath));
    return t === null ? null : posix.normalize(posix.join(posix.dirname(relPath), t));
  }
}

function rel(root: string, abs: string): string {
  return posix.relative(root, abs);
}

function listQuiet(path: string): string[] | null {
  try {
    return readdirSync(path);
  } catch {
    return null;
  }
}

function readQuiet(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function readlinkQuiet(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}
