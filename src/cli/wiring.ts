import { join } from 'node:path';
import type { Config } from '../config/model.js';
import { FileDefinitionStore } from '../host/definition-files.js';
import { SysfsInventoryReader } from '../host/sysfs/inventory.js';
import { errorMessage } from '../model/errors.js';
import type { HostPaths } from '../model/paths.js';
import type {
  DefinitionSource,
  DefinitionStore,
  DriverControl,
  HandoverHost,
  InventoryReader,
} from '../model/ports.js';
import type { CliContext } from './context.js';

// Composition root for the CLI: real host or fixture root, chosen by --root.

export function inventoryReader(ctx: CliContext): InventoryReader {
  return new SysfsInventoryReader(ctx.paths);
}

export function fileDefinitions(ctx: CliContext): FileDefinitionStore {
  return new FileDefinitionStore(ctx.paths.definitionsDir, join(ctx.paths.root, 'run/libvirt/qemu'));
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
 * The hand-over's host: systemd, logind and the kernel's writes, or on a fixture root their
 * simulation (never the real machine's). `readOnly` for the commands that only report.
 */
export async function makeHandoverHost(
  paths: HostPaths,
  fixture: boolean,
  timeoutMs: number,
  readOnly = false,
): Promise<HandoverHost> {
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
