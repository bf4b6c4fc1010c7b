import type { Config } from '../../config/model.js';
import { errorMessage, HostError, UsageError } from '../../model/errors.js';
import type { DefinitionStore } from '../../model/ports.js';
import { type PrepareInput, planStart } from '../../plan/prepare.js';
import { loadState } from '../../state/file.js';
import { type CliContext, checkTrust, loadConfig, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { installFaultSwitch } from '../faults.js';
import { confirm } from '../prompt.js';
import { definitionStore, inventoryReader, requireWritableRoot } from '../wiring.js';

/**
 * `qemu-hook apply`: make each configured domain's persistent definition name the devices where
 * they are now. Shows the diff, asks (unless --yes), never touches a running domain.
 * --dry-run: exit 0 when nothing would change, 1 when something would.
 */
export async function apply(ctx: CliContext): Promise<number> {
  const config = await loadConfig(ctx);
  const names =
    ctx.args.vms.length > 0 ? ctx.args.vms : [...config.domains.keys(), ...config.invalidDomains.keys()];
  const unknown = names.filter((n) => !config.domains.has(n) && !config.invalidDomains.has(n));
  if (unknown.length > 0)
    throw new UsageError(
      `not in the config: ${unknown.join(', ')} (configured: ${[...config.domains.keys()].join(', ') || 'none'})`,
    );
  // No uid check: apply only talks to libvirt, which decides who may redefine (root, or the
  // libvirt group through polkit); its refusal is explained where it happens.
  checkTrust(ctx, config, !ctx.args.dryRun);
  if (!ctx.args.dryRun) {
    requireWritableRoot(ctx, 'apply');
    installFaultSwitch(ctx.paths);
    if (!ctx.args.yes && !ctx.isTty)
      throw new UsageError(
        'no terminal to ask on: pass --yes to apply without asking, or --dry-run to only show the changes',
      );
  }
  const store = await definitionStore(ctx, config);
  const [inventory, state] = await Promise.all([
    inventoryReader(ctx).read(),
    loadState(stateFileOf(ctx, config), { readOnly: true }),
  ]);
  let wouldChange = 0;
  let refused = 0;
  const reports: Report[] = [];
  for (const name of names) {
    const problems = config.invalidDomains.get(name);
    if (problems) {
      if (ctx.args.json) reports.push({ domain: name, outcome: 'refused', diff: '', errors: [...problems] });
      else {
        ctx.err(`${name}: not applied: its config entry is invalid; run qemu-hook check:`);
        for (const p of problems) ctx.err(`  ${p}`);
      }
      refused++;
      continue;
    }
    const report: Report = { domain: name, outcome: 'unchanged', diff: '', errors: [] };
    const r = await applyOne(ctx, config, store, name, { inventory, records: state.records }, report).catch(
      (err) => {
        throw libvirtRefusal(err, name);
      },
    );
    reports.push({ ...report, outcome: r });
    if (r === 'refused') refused++;
    if (r === 'changed' || r === 'would-change') wouldChange++;
  }
  // --json goes with --dry-run only (args.ts): nothing was asked or written.
  if (ctx.args.json) ctx.out(JSON.stringify({ dryRun: true, domains: reports }, null, 2));
  if (refused > 0) return EXIT.refused;
  return ctx.args.dryRun && wouldChange > 0 ? EXIT.refused : EXIT.ok;
}

type Outcome = 'unchanged' | 'changed' | 'would-change' | 'skipped' | 'refused';

/** One domain's result, for --json: its diff and why it would be refused or skipped. */
interface Report {
  domain: string;
  outcome: Outcome;
  diff: string;
  errors: string[];
}

async function applyOne(
  ctx: CliContext,
  config: Config,
  store: DefinitionStore,
  name: string,
  host: Pick<PrepareInput, 'inventory' | 'records'>,
  report: Report,
): Promise<Outcome> {
  // With --json the report is the output; the lines for a person are not printed.
  const out = (line: string) => (ctx.args.json ? undefined : ctx.out(line));
  const err = (line: string) => (ctx.args.json ? report.errors.push(line) : ctx.err(line));
  const found = await store.persistentXml(name);
  if (!found) {
    err(`${name}: not defined in libvirt: define the VM first (virsh define), then apply`);
    return 'skipped';
  }
  const dc = config.domains.get(name)!;
  const input = { domain: name, config: dc, ...host };
  let plan = planStart({ ...input, definition: found });
  // An adopted entry keeps the user's own alias unless they agree to ours, which lets the hook
  // follow the device when it moves: asked here, never assumed (--yes keeps theirs).
  const kept = (plan.definition.actions ?? []).filter((a) => a.includes('keeps your alias'));
  if (kept.length > 0 && !ctx.args.yes && !ctx.args.dryRun && ctx.isTty) {
    for (const a of kept) ctx.out(`${name}: ${a}`);
    if (
      await confirm(
        `Rename ${kept.length === 1 ? 'that alias' : 'those aliases'} to qemu-hook's (ua-qemuhook-<entry>), so the hook can follow the device when it moves? [y/N] `,
      )
    )
      plan = planStart({ ...input, definition: found, renameUserAliases: true });
  }
  const newXml = plan.definition.changed && plan.definition.xml ? plan.definition.xml : null;
  // Check the result as the next start will, before writing anything: what apply cannot fix
  // (a device missing or ambiguous, the root disk, a group) is said now, not at `virsh start`.
  const after = newXml ? planStart({ ...input, definition: { xml: newXml, source: 'new' } }) : plan;
  const blocking = after.errors.filter((e) => !/is held by domain/.test(e));
  if (newXml) {
    report.diff = plan.definition.diff;
    out(colourDiff(plan.definition.diff, ctx.isTty));
    for (const a of plan.definition.actions ?? []) out(`  ${a}`);
  }
  if (blocking.length > 0) {
    if (ctx.args.json) report.errors.push(...blocking);
    else {
      ctx.err(
        `${name}: ${newXml ? 'not applied: the new definition would still be refused' : 'a start would be refused'}:`,
      );
      for (const e of blocking) ctx.err(`  ${e}`);
    }
    return 'refused';
  }
  if (!newXml) {
    out(`${name}: definition already in step with the hardware`);
    return 'unchanged';
  }
  if (ctx.args.dryRun) return 'would-change';
  if (await store.isActive(name)) {
    ctx.out(
      `${name}: running: not redefined (the change would only apply after it stops); run apply again then`,
    );
    return 'skipped';
  }
  if (!ctx.args.yes && !(await confirm(`Apply to ${name}? [y/N] `))) {
    ctx.out(`${name}: left as it was`);
    return 'skipped';
  }
  try {
    await store.define(name, newXml);
  } catch (err) {
    // libvirt validates the new definition before it replaces the old one: say it in its words.
    ctx.err(
      `${name}: not applied: libvirt refused the new definition (the old one is unchanged): ${errorMessage(err)}`,
    );
    return 'refused';
  }
  ctx.out(`${name}: definition updated`);
  return 'changed';
}

/** libvirt, not qemu-hook, decides who may redefine: when it says no, say who may. */
function libvirtRefusal(err: unknown, domain: string): unknown {
  const message = errorMessage(err);
  if (!/permission denied|access denied|not allowed|authentication|read-only/i.test(message)) return err;
  return new HostError(
    'redefine',
    domain,
    'EACCES',
    `libvirt refused (${message}): run apply as root or as a member of the libvirt group (polkit decides who may manage domains)`,
  );
}

export function colourDiff(diff: string, colour: boolean): string {
  const text = diff.trimEnd();
  if (!colour) return text;
  return text
    .split('\n')
    .map((l) =>
      l.startsWith('+++') || l.startsWith('---')
        ? `\x1b[1m${l}\x1b[0m`
        : l.startsWith('+')
          ? `\x1b[32m${l}\x1b[0m`
          : l.startsWith('-')
            ? `\x1b[31m${l}\x1b[0m`
            : l.startsWith('@@')
              ? `\x1b[36m${l}\x1b[0m`
              : l,
    )
    .join('\n');
}
