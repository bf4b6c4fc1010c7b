import { join } from 'node:path';
import type { Config } from '../config/model.js';
import { FileDefinitionStore } from '../host/definition-files.js';
import { FIXTURE_STATE_DIR, hasFixtureState } from '../host/root-kind.js';
import { SysfsInventoryReader } from '../host/sysfs/inventory.js';
import { errorMessage, UsageError } from '../model/errors.js';
import type { HostPaths } from '../model/paths.js';
import type {
  DefinitionSource,
  DefinitionStore,
  DriverControl,
  HandoverHost,
  InventoryReader,
  ServiceManager,
} from '../model/ports.js';
import type { CliContext } from './context.js';

// Composition root for the CLI: real host or fixture root, chosen by --root.

export function inventoryReader(ctx: CliContext): InventoryReader {
  return new SysfsInventoryReader(ctx.paths);
}

export function fileDefinitions(ctx: CliContext): FileDefinitionStore {
  return FileDefinitionStore.of(ctx.paths);
}

/**
 * Persistent definitions: with --root only the fixture's files; otherwise libvirt read-only, and
 * libvirt's own files when libvirt cannot be reached (said once on stderr).
 */
export async function definitionSource(ctx: CliContext, config: Config): Promise<DefinitionSource> {
  const files = fileDefinitions(ctx);
  if (ctx.fixtureRoot) return files;
  let unreachable = false;
  // One connection for every domain asked about (check asks about all of them).
  let store: Promise<DefinitionSource> | null = null;
  const open = async () => {
    const { LibvirtDefinitionStore } = await import('../host/libvirt/definition-store.js');
    return new LibvirtDefinitionStore(config.libvirtUri, { readOnly: true });
  };
  return {
    async persistentXml(domain) {
      if (unreachable) return files.persistentXml(domain);
      try {
        store ??= open();
        return await (await store).persistentXml(domain);
      } catch (err) {
        unreachable = true;
        ctx.err(
          `note: libvirt unreachable at ${config.libvirtUri} (${errorMessage(err)}); reading ${ctx.paths.definitionsDir} instead`,
        );
        return files.persistentXml(domain);
      }
    },
  };
}

/** Where a definition that was not found was looked for, for the "not defined" refusal. */
export function definitionLookedIn(ctx: CliContext, config: Config, domain: string): string {
  return ctx.fixtureRoot
    ? `looked for ${join(ctx.paths.definitionsDir, `${domain}.xml`)}`
    : `looked in libvirt ${config.libvirtUri}`;
}

export async function definitionStore(ctx: CliContext, config: Config): Promise<DefinitionStore> {
  if (ctx.fixtureRoot) return fileDefinitions(ctx);
  const { LibvirtDefinitionStore } = await import('../host/libvirt/definition-store.js');
  return new LibvirtDefinitionStore(config.libvirtUri, { readOnly: false });
}

export async function driverControl(ctx: CliContext, config: Config): Promise<DriverControl> {
  if (ctx.fixtureRoot) {
    const { FixtureDriverControl } = await import('../host/fixture-driver-control.js');
    return new FixtureDriverControl(ctx.paths.root);
  }
  const { LibvirtDriverControl } = await import('../host/libvirt/driver-control.js');
  return new LibvirtDriverControl(config.libvirtUri, ctx.paths.sys);
}

/**
 * The hand-over's host: systemd, logind and the kernel's writes; on a fixture root their
 * simulation (never the real machine's); on a snapshot of a real host (a --root without a
 * simulated kernel), what the snapshot captured of systemd and logind, and no writes at all.
 * `readOnly` for the commands that only report.
 */
export async function makeHandoverHost(
  paths: HostPaths,
  fixture: boolean,
  timeoutMs: number,
  readOnly = false,
): Promise<HandoverHost> {
  if (fixture && !hasFixtureState(paths.root)) {
    const { ReadOnlyKernel, ReplayServiceManager } = await import('../host/handover/replay.js');
    const { SysfsHandoverProbe } = await import('../host/handover/probe.js');
    const services = new ReplayServiceManager(paths.root);
    return { services, kernel: new ReadOnlyKernel(), probe: new SysfsHandoverProbe(paths, services) };
  }
  if (fixture) {
    const { FixtureKernel } = await import('../host/handover/fixture-kernel.js');
    const { FixtureHandoverProbe, FixtureServiceManager } = await import(
      '../host/handover/fixture-services.js'
    );
    const services = new FixtureServiceManager(paths.root);
    return {
      services,
      kernel: new FixtureKernel(paths.root),
      probe: new FixtureHandoverProbe(paths, services, readOnly),
    };
  }
  const { SystemdServiceManager } = await import('../host/handover/systemd.js');
  const { SysfsKernelWriter } = await import('../host/handover/sysfs-kernel.js');
  const { SysfsHandoverProbe } = await import('../host/handover/probe.js');
  const services = new SystemdServiceManager(timeoutMs, paths.proc);
  return {
    services,
    kernel: new SysfsKernelWriter(paths.sys, timeoutMs),
    probe: new SysfsHandoverProbe(paths, services),
  };
}

/**
 * Where `snapshot` asks systemd and logind: the real ones on the real host, the simulated ones on a
 * fixture; null on a replayed snapshot, whose captured answers are copied as they are.
 */
export async function servicesToCapture(ctx: CliContext): Promise<ServiceManager | null> {
  if (ctx.fixtureRoot && !hasFixtureState(ctx.paths.root)) return null;
  return (await makeHandoverHost(ctx.paths, ctx.fixtureRoot, 5_000, true)).services;
}

/**
 * A root with no simulated kernel is a snapshot of a real host: there is nothing to write to, and
 * the commands that change a host refuse it (exit 2) rather than fail half-way.
 */
export function snapshotRootRefusal(root: string, what: string, named: string): string | null {
  if (root === '/' || hasFixtureState(root)) return null;
  return `${what} changes the host, and ${named} is a snapshot (it has no ${FIXTURE_STATE_DIR}, the simulated kernel of a fixture host): a snapshot is for reading (devices, check, --simulate, status); run ${what} on the host it was taken from`;
}

export function requireWritableRoot(ctx: CliContext, what: string): void {
  if (!ctx.fixtureRoot) return;
  // An unpacked archive's temp folder means nothing to the user: --root names it.
  const refusal = snapshotRootRefusal(ctx.paths.root, what, 'this --root');
  if (refusal) throw new UsageError(refusal);
}
