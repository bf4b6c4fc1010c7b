import type { Plan } from '../../model/plan.js';
import { planRefusedByConfig, planStart } from '../../plan/prepare.js';
import { planRelease } from '../../plan/release.js';
import { loadState } from '../../state/file.js';
import { type CliContext, checkTrust, loadConfig, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { table } from '../table.js';
import { definitionLookedIn, definitionSource, inventoryReader } from '../wiring.js';

/** `qemu-hook --simulate <domain> prepare|release`: the plan the hook would carry out; changes nothing. */
export async function simulate(ctx: CliContext): Promise<number> {
  const { domain, event } = ctx.args.simulate!;
  const config = await loadConfig(ctx);
  checkTrust(ctx, config, false);
  const dc = config.domains.get(domain);
  const problems = config.invalidDomains.get(domain);
  if (problems) {
    // Its own entry is invalid: the hook refuses this domain (only this one) until it is fixed.
    const plan = planRefusedByConfig(domain, problems);
    if (ctx.args.json) ctx.out(JSON.stringify(planJson(plan), null, 2));
    else for (const line of humanPlan(plan)) ctx.out(line);
    return EXIT.usage;
  }
  if (!dc) {
    if (ctx.args.json)
      ctx.out(
        JSON.stringify({
          domain,
          event,
          ok: true,
          configured: false,
          devices: [],
          definition: { changed: false, diff: '' },
          errors: [],
        }),
      );
    else ctx.out(`${domain}: not in the config (${ctx.paths.configFile}): nothing to do`);
    return EXIT.ok;
  }
  const [inventory, state] = await Promise.all([
    inventoryReader(ctx).read(),
    loadState(stateFileOf(ctx, config), { readOnly: true }),
  ]);
  let plan: Plan;
  if (event === 'prepare') {
    const source = await definitionSource(ctx, config);
    const found = await source.persistentXml(domain);
    plan = planStart({
      domain,
      config: dc,
      inventory,
      definition: found ?? { missing: true, source: definitionLookedIn(ctx, config, domain) },
      records: state.records,
    });
  } else {
    plan = planRelease(domain, inventory, state.records);
  }
  if (ctx.args.json) ctx.out(JSON.stringify(planJson(plan), null, 2));
  else for (const line of humanPlan(plan)) ctx.out(line);
  return plan.ok ? EXIT.ok : EXIT.refused;
}

/** The `--json` contract: domain, event, ok, devices, definition, errors (more fields may be added). */
export function planJson(plan: Plan): object {
  const { xml: _xml, ...definition } = plan.definition;
  return { ...plan, configured: true, definition };
}

export function humanPlan(plan: Plan): string[] {
  const lines = [`${plan.domain} ${plan.event}: ${plan.ok ? 'ok' : 'REFUSED'}`];
  if (plan.devices.length > 0) {
    lines.push(
      ...table(
        ['DEVICE', 'TYPE', 'HOST', 'DRIVER', 'ACTION', 'GROUP', 'WHY'],
        plan.devices.map((d) => [
          d.name,
          d.type,
          d.address ??
            (d.usb
              ? `${d.usb.vendor}:${d.usb.product} @${d.usb.port}`
              : d.candidates
                ? `ambiguous: ${d.candidates.join(', ')}`
                : '-'),
          d.driver ?? '-',
          plan.event === 'release' ? `reattach → ${d.originalDriver ?? '(none)'}` : d.action,
          d.iommuGroup === null ? '-' : String(d.iommuGroup),
          d.reason ?? d.matchedBy ?? '',
        ]),
      ),
    );
  } else {
    lines.push(
      plan.event === 'release'
        ? '  nothing recorded for this domain: release does nothing'
        : plan.errors.length > 0
          ? '  no device planned'
          : '  no devices configured',
    );
  }
  if (plan.event === 'prepare') lines.push(...definitionLines(plan));
  for (const w of plan.warnings) lines.push(`warning: ${w}`);
  for (const e of plan.errors) lines.push(`refused: ${e}`);
  return lines;
}

function definitionLines(plan: Plan): string[] {
  const def = plan.definition;
  const src = def.source ? ` (${def.source})` : '';
  if (def.missing) return [`definition: not found${src}`];
  if (def.changed)
    return [
      `definition${src}${def.stale ? ' is stale and' : ''} should become:`,
      ...def.diff
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    ];
  if (!def.source) return ['definition: not checked'];
  // An entry that found no device leaves its part of the definition unchecked: do not claim more.
  const unfound = plan.devices.some((d) => d.action === 'refuse' && d.address === null && !d.usb);
  return [
    `definition${src}: ${def.stale ? 'stale' : unfound ? 'in step with the devices found' : 'in step with the hardware'}`,
  ];
}
