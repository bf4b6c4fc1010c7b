import { mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../../config/load.js';
import { captureHost } from '../../host/snapshot/capture.js';
import { Redactor } from '../../host/snapshot/redact.js';
import { HostError } from '../../model/errors.js';
import { type CliContext, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';

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
