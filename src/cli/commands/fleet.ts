import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../../config/load.js';
import { hostName } from '../../host/hostname.js';
import { errorMessage, UsageError } from '../../model/errors.js';
import { hostPaths } from '../../model/paths.js';
import type { Plan } from '../../model/plan.js';
import { type CliContext, makeContext } from '../context.js';
import { EXIT } from '../exit.js';
import { openRoot } from '../root-archive.js';
import { table } from '../table.js';
import { inventoryReader } from '../wiring.js';
import { planEveryDomain } from './check.js';
import { planJson } from './simulate.js';

interface HostResult {
  readonly snapshot: string;
  readonly host: string | null;
  readonly hostSections: readonly string[];
  readonly ok: boolean;
  /** Why the host could not be checked at all (an unsafe archive, an unreadable tree). */
  readonly error: string | null;
  readonly plans: readonly Plan[];
}

/**
 * `qemu-hook check --fleet DIR`: one config (--config, or this machine's) against every snapshot in
 * DIR (`*.tar.gz`, or folders laid out as a --root), offline, each planned as `check` plans a host:
 * the domains of that host (its `hosts:` sections applied by its hostname), every start as the hook
 * would plan it. Exit 2 on config problems, 1 when a start on any host would be refused.
 */
export async function checkFleet(ctx: CliContext, dir: string): Promise<number> {
  if (ctx.args.root !== null)
    throw new UsageError('--fleet reads each snapshot in DIR as its root: leave out --root');
  const configFile = ctx.args.config ? resolve(ctx.args.config) : hostPaths('/').configFile;
  const snapshots = listSnapshots(dir);
  // The config's own problems (outside any domain) are the same on every host: said once.
  const shared = await loadConfigFile(configFile);
  if (!shared.config) {
    ctx.err(`${configFile}: ${shared.errors.length} problem${shared.errors.length === 1 ? '' : 's'}`);
    for (const e of shared.errors) ctx.err(`  ${e}`);
    return EXIT.usage;
  }
  const results: HostResult[] = [];
  for (const file of snapshots) results.push(await checkOne(ctx, file, configFile));
  const ok = results.every((r) => r.ok);

  if (ctx.args.json) {
    ctx.out(
      JSON.stringify(
        {
          configFile,
          ok,
          hosts: results.map((r) => ({
            snapshot: r.snapshot,
            host: r.host,
            hostSections: r.hostSections,
            ok: r.ok,
            error: r.error,
            domains: r.plans.map(planJson),
          })),
        },
        null,
        2,
      ),
    );
  } else {
    const refused = results.reduce((n, r) => n + (r.error ? 1 : r.plans.filter((p) => !p.ok).length), 0);
    ctx.out(
      `${configFile} on ${results.length} host${results.length === 1 ? '' : 's'}: ${refused === 0 ? 'every start would go ahead' : `${refused} start${refused === 1 ? '' : 's'} would be refused`}`,
    );
    const rows = results.flatMap((r) =>
      r.error
        ? [[r.host ?? '?', r.snapshot, '-', 'REFUSED', r.error]]
        : r.plans.map((p) => [
            r.host ?? '?',
            r.snapshot,
            p.domain,
            p.ok ? 'ok' : 'REFUSED',
            p.ok ? sectionNote(r) : (p.errors[0] ?? 'refused'),
          ]),
    );
    for (const line of table(['HOST', 'SNAPSHOT', 'DOMAIN', 'RESULT', 'WHY'], rows)) ctx.out(line);
  }
  return ok ? EXIT.ok : EXIT.refused;
}

function sectionNote(r: HostResult): string {
  return r.hostSections.length > 0 ? `hosts: ${r.hostSections.join(', ')}` : '';
}

function listSnapshots(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch (err) {
    throw new UsageError(`--fleet ${dir}: cannot read the folder (${errorMessage(err)})`);
  }
  const found = entries
    .map((e) => join(dir, e))
    .filter((p) => {
      try {
        const st = statSync(p);
        return st.isFile()
          ? /\.(tar\.gz|tgz)$/.test(p)
          : st.isDirectory() && statSync(join(p, 'sys')).isDirectory();
      } catch {
        return false;
      }
    });
  if (found.length === 0)
    throw new UsageError(
      `--fleet ${dir}: no snapshots in it (make them with qemu-hook snapshot on each host)`,
    );
  return found;
}

async function checkOne(ctx: CliContext, file: string, configFile: string): Promise<HostResult> {
  const name = file.slice(file.lastIndexOf('/') + 1);
  let opened: Awaited<ReturnType<typeof openRoot>>;
  try {
    opened = await openRoot(file);
  } catch (err) {
    return { snapshot: name, host: null, hostSections: [], ok: false, error: errorMessage(err), plans: [] };
  }
  try {
    const hostCtx = makeContext({ ...ctx.args, root: opened.dir, config: configFile });
    const host = hostName(hostCtx.paths);
    const r = await loadConfigFile(configFile, { host });
    if (!r.config) throw new UsageError(r.errors[0] ?? 'config problems');
    const inventory = await inventoryReader(hostCtx).read();
    const plans = await planEveryDomain(hostCtx, r.config, inventory);
    return {
      snapshot: name,
      host,
      hostSections: r.config.hostSections,
      ok: plans.every((p) => p.ok),
      error: null,
      plans,
    };
  } finally {
    opened.cleanup();
  }
}
