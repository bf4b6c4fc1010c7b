import type { Inventory } from './device.js';
import type {
  GpuHolder,
  GpuNode,
  HandoverSnapshot,
  KernelModule,
  LoginSession,
  VirtualConsole,
} from './handover.js';
import type { PciAddress } from './pci-address.js';

// Interfaces through which plan/ and hook/ reach the host. host/ implements them; cli/ wires them.

/** Reads the host's devices (sysfs under a root). */
export interface InventoryReader {
  read(): Promise<Inventory>;
  /**
   * The boot id alone, for the events that act on devices already recorded (release): the records
   * say which devices, HostSafety checks each of them; a full read of a host with hundreds of
   * functions would be spent on nothing.
   */
  bootId(): Promise<string | null>;
}

/**
 * Moves PCI devices between host drivers and vfio-pci. This is the only port hook mode gets
 * for libvirt: it has no way to look up or list domains, which would hang libvirt while a hook runs.
 */
export interface DriverControl {
  /** Hand the device to vfio-pci (virNodeDeviceDetachFlags(dev, "vfio")). No-op if already there. */
  detach(address: PciAddress): Promise<void>;
  /** Give the device back to the host (virNodeDeviceReAttach): the kernel picks the driver. */
  reattach(address: PciAddress): Promise<void>;
  /** Bind a named driver: driver_override = driver, unbind, drivers_probe, clear driver_override. */
  bindDriver(address: PciAddress, driver: string): Promise<void>;
  /** Unbind from whatever driver holds the device, leaving it with none (its original state). */
  unbind(address: PciAddress): Promise<void>;
  /** The driver bound now, null when none. */
  currentDriver(address: PciAddress): Promise<string | null>;
  /**
   * Starts what the first detach or reattach will need (libvirt's connection) without waiting for
   * it, so that it overlaps the planning; a failure there is left for that first call to report.
   */
  warmUp?(): void;
}

/** The persistent definition of a domain, for CLI commands only (never in hook mode). */
export interface DefinitionSource {
  /** null when the domain is not defined. `source` says where the XML came from. */
  persistentXml(domain: string): Promise<{ xml: string; source: string } | null>;
}

/** Writes persistent definitions (libvirt defineXML, or a file under --root). CLI only. */
export interface DefinitionStore extends DefinitionSource {
  isActive(domain: string): Promise<boolean>;
  define(domain: string, xml: string): Promise<void>;
}

/**
 * What the executor checks on the host before it records or gives back a device: a state record
 * is a claim, and the host decides (a forged or outdated record must not unbind the root disk).
 */
export interface HostSafety {
  /** The vendor and device ids at `address` now ("10de", "2204"); null when nothing is there. */
  ids(address: PciAddress): Promise<{ vendor: string; device: string } | null>;
  /** Why the device must stay with the host now (a disk in use, the default route, the console), or null. */
  protection(address: PciAddress): Promise<string | null>;
}

export interface Clock {
  now(): Date;
}

// --- single-GPU hand-over -----------------------------------------------------------------------

/** systemd and logind: units of the system and of users, sessions, and signals to processes. */
export interface ServiceManager {
  isActive(unit: string): Promise<boolean>;
  /** Those of the units that are active now: one question for all of them. */
  activeAmong(units: readonly string[]): Promise<ReadonlySet<string>>;
  /** Stops the units in one transaction; returns when every stop job finished (or failed). */
  stop(units: readonly string[]): Promise<void>;
  start(unit: string): Promise<void>;
  sessions(): Promise<readonly LoginSession[]>;
  /** Stops a unit of a user's manager (`systemctl --user -M <user>@ stop <unit>`). */
  stopUserUnit(user: string, unit: string): Promise<void>;
  terminateSession(id: string): Promise<void>;
  /** Never PID 1 and never libvirt's daemons: the executor checks, the adapter checks again. */
  signal(pid: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

/**
 * The kernel writes of a hand-over. Each may block (an unbind while the card is in use, a module
 * removal): real adapters run them in a child with a deadline. Errors carry the errno as `code`
 * (ENODEV: the device is gone; EAGAIN/EBUSY: still in use; ENOENT: no such vtcon or module).
 */
export interface KernelWriter {
  /** Writes 0 or 1 to /sys/class/vtconsole/<vtcon>/bind. */
  bindVtcon(vtcon: string, bind: boolean): Promise<void>;
  /** Writes the device to /sys/bus/platform/drivers/<driver>/unbind. */
  unbindPlatform(device: string, driver: string): Promise<void>;
  bindPlatform(device: string, driver: string): Promise<void>;
  /** delete_module: only this module, never its dependencies (rmmod, not modprobe -r). */
  unloadModule(name: string): Promise<void>;
  /** modprobe with the given parameters. */
  loadModule(name: string, parameters: Readonly<Record<string, string>>): Promise<void>;
}

/** Reads the GPU's surroundings: once before the hand-over, then again to verify each step. */
export interface HandoverProbe {
  /** `units`: services whose state the plan needs besides the detected ones; `modules`: the configured ones. */
  snapshot(
    functions: readonly string[],
    wanted: { readonly units: readonly string[]; readonly modules: readonly string[] },
  ): Promise<HandoverSnapshot>;
  /** The GPU functions' device nodes (cheap: sysfs only). */
  nodes(functions: readonly string[]): Promise<readonly GpuNode[]>;
  /**
   * The processes holding any of `nodes` now: polled while waiting for them to leave. `among`:
   * look at these pids only (a recheck of known holders), not at every process.
   */
  holders(nodes: readonly GpuNode[], among?: readonly number[]): Promise<readonly GpuHolder[]>;
  vtcons(): Promise<readonly VirtualConsole[]>;
  /** The platform device's driver; null when unbound, 'gone' when the device is unregistered. */
  platformDriver(device: string): Promise<string | null | 'gone'>;
  module(name: string): Promise<KernelModule>;
  /** The PCI function's driver now, null when none. */
  pciDriver(address: string): Promise<string | null>;
}

/** Everything the hand-over executor reaches the host through. */
export interface HandoverHost {
  readonly services: ServiceManager;
  readonly kernel: KernelWriter;
  readonly probe: HandoverProbe;
}
