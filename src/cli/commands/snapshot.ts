import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { loadConfigFile } from '../../config/load.js';
import type { Config } from '../../config/model.js';
import { SNAPSHOT_SERVICES_FILE } from '../../host/root-kind.js';
import { captureHost } from '../../host/snapshot/capture.js';
import { Redactor } from '../../host/snapshot/redact.js';
import { captureServices, type ServicesCapture } from '../../host/snapshot/services.js';
import { errorMessage, HostError } from '../../model/errors.js';
import type { ServiceManager } from '../../model/ports.js';
import { type CliContext, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { inventoryReader, servicesToCapture } from '../wiring.js';

/**
 * `qemu-hook snapshot`: what the program reads from this host (or from --root), in one .tar.gz
 * that `--root FILE` replays. Reads only; writes nothing but the archive.
 */
export async function snapshot(ctx: CliContext): Promise<number> {
  const config = (await loadConfigFile(ctx.paths.configFile).catch(() => null))?.config ?? null;
  const redactor = ctx.args.redact ? new Redactor() : null;
  const stage = mkdtempSync(join(tmpdir(), 'qemu-hook-snapshot-'));
  try {
    const report = captureHost({ paths: ctx.paths, stateFile: stateFileOf(ctx, config), stage, redactor });
    const services = await captureHandoverServices(ctx, config, stage, redactor);
    const host = report.hostname ?? (ctx.fixtureRoot ? 'host' : osHostname());
    const shownHost = redactor ? redactor.text(host) : host;
    const file = resolve(ctx.args.output ?? defaultName(shownHost, new Date()));
    const { packFolder } = await import('../../host/snapshot/archive.js');
    const partial = `${file}.partial`;
    try {
      await packFolder(stage, partial);
      renameSync(partial, file);
    } catch (err) {
      throw HostError.from('write snapshot', file, err);
    } finally {
      rmSync(partial, { force: true });
    }
    const kib = Math.ceil(statSync(file).size / 1024);
    ctx.out(`wrote ${file} (${kib} KiB)${redactor ? ', redacted' : ''}, host ${shownHost}:`);
    for (const [kind, n] of Object.entries(report.counts)) ctx.out(`  ${n} ${kind}`);
    if (report.unreadable.length > 0) {
      ctx.out(`could not read ${report.unreadable.length} (run as root to include them):`);
      for (const u of report.unreadable) ctx.out(`  ${u}`);
    }
    if (services) {
      const { units, sessions } = services.captured;
      const n = Object.keys(units).length;
      const shown = sessions
        ? `${sessions.length} session${sessions.length === 1 ? '' : 's'}`
        : 'sessions unknown';
      ctx.out(`  ${n} unit state${n === 1 ? '' : 's'}, ${shown} (systemd, logind: what the hand-over asks)`);
      if (services.unreadable.length > 0) {
        ctx.out(`could not read from systemd/logind (a replay shows them as unknown):`);
        for (const u of services.unreadable) ctx.out(`  ${redactor ? redactor.text(u) : u}`);
      }
    }
    if (report.absent.length > 0) ctx.out(`not on this host: ${report.absent.join(', ')}`);
    ctx.out(`replay it with: qemu-hook devices --root ${file}`);
    return EXIT.ok;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function defaultName(host: string, now: Date): string {
  const stamp = now.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-');
  return `qemu-hook-snapshot-${host.replace(/[^A-Za-z0-9._-]/g, '_')}-${stamp}.tar.gz`;
}

/**
 * What the hand-over plan asks systemd and logind (not in sysfs or proc), read through the plan's
 * own probe and kept in the snapshot for its replay. Never fails the snapshot: what could not be
 * asked is said, and a replay shows it as unknown. Null on a replayed snapshot (its answers were
 * copied with it).
 */
async function captureHandoverServices(
  ctx: CliContext,
  config: Config | null,
  stage: string,
  redactor: Redactor | null,
): Promise<ServicesCapture | null> {
  let services: ServiceManager | null;
  try {
    services = await servicesToCapture(ctx);
  } catch (err) {
    return {
      captured: { units: {}, unreadable: { systemd: errorMessage(err) } },
      unreadable: [`systemd: ${errorMessage(err)}`],
    };
  }
  if (!services) return null;
  // Every display function and the functions beside it (HDMI audio): whatever a domain hands over.
  let functions: string[] = [];
  try {
    const pci = (await inventoryReader(ctx).read()).pci;
    const slots = new Set(
      pci.filter((p) => p.classCode.startsWith('03')).map((p) => p.address.toString().slice(0, -2)),
    );
    functions = pci.map((p) => p.address.toString()).filter((a) => slots.has(a.slice(0, -2)));
  } catch {
    // no PCI devices to read: the display manager and the configured units are still asked about
  }
  const units = [
    ...new Set([...(config?.domains.values() ?? [])].flatMap((d) => d.handover?.services ?? [])),
  ];
  let capture: ServicesCapture;
  try {
    capture = await captureServices(ctx.paths, services, functions, units);
  } catch (err) {
    capture = {
      captured: { units: {}, unreadable: { systemd: errorMessage(err) } },
      unreadable: [`systemd: ${errorMessage(err)}`],
    };
  }
  const file = join(stage, SNAPSHOT_SERVICES_FILE);
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  const text = `${JSON.stringify(capture.captured, null, 2)}\n`;
  writeFileSync(file, redactor ? redactor.text(text) : text, { mode: 0o644 });
  return capture;
}
