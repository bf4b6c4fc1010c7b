import { loadConfigFile } from '../../config/load.js';
import type { Config } from '../../config/model.js';
import { claimConflicts } from '../../config/rules.js';
import { hostName } from '../../host/hostname.js';
import { programSnapshot, snapshotFit, snapshotNote } from '../../host/startup-snapshot.js';
import type { Inventory } from '../../model/device.js';
import { errorMessage } from '../../model/errors.js';
import type { Plan } from '../../model/plan.js';
import { iommuProblem, pciIdsProblem } from '../../plan/host-support.js';
import { planRefusedByConfig, planStart } from '../../plan/prepare.js';
import { loadState } from '../../state/file.js';
import { type CliContext, checkTrust, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { definitionLookedIn, definitionSource, inventoryReader } from '../wiring.js';
import { planJson } from './simulate.js';

/**
 * `qemu-hook check`: what a start of every configured domain would do, planned exactly as the hook
 * plans it (planStart, against the persistent definition as `--simulate` reads it). Exit 2 on
 * config problems, 1 when any configured start would be refused, 0 when every one would go ahead.
 */
export async function check(ctx: CliContext): Promise<number> {
  if (ctx.args.fleet !== null) return (await import('./fleet.js')).checkFleet(ctx, ctx.args.fleet);
  const file = ctx.paths.configFile;
  const r = await loadConfigFile(file, { host: hostName(ctx.paths) });
  if (!r.config) {
    if (ctx.args.json)
      ctx.out(JSON.stringify({ configFile: file, ok: false, errors: r.errors, domains: [] }, null, 2));
    else {
      ctx.err(
        `${file}: ${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}${r.missing ? '' : ' (every configured domain is refused until they are fixed)'}`,
      );
      for (const e of r.errors) ctx.err(`  ${e}`);
    }
    return EXIT.usage;
  }
  const config = r.config;
  checkTrust(ctx, config, false);
  let inventory: Inventory;
  try {
    inventory = await inventoryReader(ctx).read();
  } catch (err) {
    ctx.err(`${file}: cannot read the host's devices (${errorMessage(err)}); nothing planned`);
    return EXIT.usage;
  }
  const hostNotes = [
    iommuProblem(inventory.support),
    pciIdsProblem(inventory.support),
    // About this program rather than the host (so also under --root): whether its events start fast.
    snapshotNote(snapshotFit(programSnapshot())),
  ].filter((n): n is string => n !== null);
  const plans = await planEveryDomain(ctx, config, inventory);
  // Problems of hosts: sections for other hosts come as warnings: they refuse nothing here.
  const warnings = [...r.warnings, ...claimConflicts(config)];
  const configInvalid = config.invalidDomains.size > 0;
  const refused = plans.filter((p) => !p.ok).length;

  if (ctx.args.json) {
    ctx.out(
      JSON.stringify(
        {
          configFile: file,
          ok: refused === 0,
          host: hostNotes,
          warnings,
          errors: [],
          domains: plans.map((p) => ({
            ...planJson(p),
            configErrors: config.invalidDomains.get(p.domain) ?? [],
          })),
        },
        null,
        2,
      ),
    );
  } else {
    for (const n of hostNotes) ctx.out(`host: ${n}`);
    const total = plans.length;
    ctx.out(
      `${file}: ${total} domain${total === 1 ? '' : 's'}, ${refused === 0 ? 'every start would go ahead' : `${refused} start${refused === 1 ? '' : 's'} would be refused`}`,
    );
    for (const w of warnings) ctx.out(`warning: ${w}`);
    for (const p of plans) for (const line of domainLines(p, config)) ctx.out(line);
  }
  if (configInvalid) return EXIT.usage;
  return refused > 0 ? EXIT.refused : EXIT.ok;
}

/** Every configured domain, valid or not, in the order of the file, through the one planner. */
export async function planEveryDomain(
  ctx: CliContext,
  config: Config,
  inventory: Inventory,
): Promise<Plan[]> {
  const state = await loadState(stateFileOf(ctx, config), { readOnly: true });
  const source = await definitionSource(ctx, config);
  const plans: Plan[] = [];
  for (const [name, problems] of config.invalidDomains) plans.push(planRefusedByConfig(name, problems));
  for (const [name, dc] of config.domains) {
    const found = await source.persistentXml(name);
    plans.push(
      planStart({
        domain: name,
        config: dc,
        inventory,
        records: state.records,
        definition: found ?? { missing: true, source: definitionLookedIn(ctx, config, name) },
      }),
    );
  }
  return plans;
}

function domainLines(plan: Plan, config: Config): string[] {
  const problems = config.invalidDomains.get(plan.domain);
  if (problems)
    return [`${plan.domain}: REFUSED: its config entry is invalid`, ...problems.map((p) => `  ${p}`)];
  const lines = [`${plan.domain}: ${plan.ok ? 'ok' : 'REFUSED'}`];
  for (const d of plan.devices) {
    const where =
      d.address ??
      (d.usb
        ? `usb ${d.usb.vendor}:${d.usb.product} @${d.usb.port}`
        : d.candidates
          ? `ambiguous: ${d.candidates.join(', ')}`
          : '-');
    const why = d.reason ?? (d.matchedBy ? `by ${d.matchedBy}` : '');
    lines.push(`  ${d.name}: ${where}, ${d.action}${why ? ` (${why})` : ''}`);
  }
  if (plan.devices.length === 0 && plan.ok) lines.push('  no devices configured');
  if (plan.ok && plan.definition.changed)
    lines.push(
      `  the definition would change: qemu-hook apply --vm ${plan.domain} (the diff: qemu-hook --simulate ${plan.domain} prepare)`,
    );
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  // A refusal already shown on its device is not repeated.
  const shown = plan.devices.map((d) => (d.action === 'refuse' ? (d.reason ?? '') : ''));
  for (const e of plan.errors)
    if (!shown.some((reason) => reason.includes(e.slice(e.indexOf(': ') + 2)))) lines.push(`  refused: ${e}`);
  return lines;
}
