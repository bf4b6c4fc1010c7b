import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../../model/errors.js';
import type { HandoverStep } from '../../model/handover.js';
import type { Plan } from '../../model/plan.js';
import { gpuFunctions, inverseText, planHandover, sessionHoldersError } from '../../plan/handover.js';
import { planRefusedByConfig, planStart } from '../../plan/prepare.js';
import { planRelease } from '../../plan/release.js';
import { loadState } from '../../state/file.js';
import { handoversFor } from '../../state/records.js';
import { type CliContext, checkTrust, loadConfig, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { table } from '../table.js';
import { definitionLookedIn, definitionSource, inventoryReader, makeHandoverHost } from '../wiring.js';
import type { EventScripts } from './simulate-scripts.js';

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
  const [inventory, state] = await Promise.all([
    inventoryReader(ctx).read(),
    loadState(stateFileOf(ctx, config), { readOnly: true }),
  ]);
  const scripts = await eventScripts(ctx, domain, event);
  // The hook gives back what the state file records for a domain, configured or not any more, and
  // runs a domain's scripts whether or not it is configured.
  const recorded = state.records.some((r) => r.domain === domain);
  if (!dc && !(event === 'release' && recorded) && (scripts?.scripts.length ?? 0) === 0) {
    const configured = [...config.domains.keys()];
    throw new UsageError(
      `${domain} is not in the config (${ctx.paths.configFile}): ${configured.length > 0 ? `configured: ${configured.join(', ')}` : 'no VM is configured'}`,
    );
  }
  let plan: Plan;
  if (event === 'prepare' && dc) {
    const source = await definitionSource(ctx, config);
    const found = await source.persistentXml(domain);
    plan = planStart({
      domain,
      config: dc,
      inventory,
      definition: found ?? { missing: true, source: definitionLookedIn(ctx, config, domain) },
      records: state.records,
    });
  } else if (event === 'release') {
    plan = planRelease(domain, inventory, state.records);
  } else {
    // Not configured, with scripts: the hook runs only them.
    plan = {
      domain,
      event,
      ok: true,
      devices: [],
      definition: { changed: false, diff: '' },
      errors: [],
      warnings: [],
    };
  }
  // The single-GPU hand-over: the steps a start would take, or the give-back a release would run.
  let handover: HandoverView[] = [];
  if (event === 'prepare' && dc) {
    const gpu = gpuFunctions(plan.devices, inventory);
    if (gpu.length > 0) {
      const host = await makeHandoverHost(ctx.paths, ctx.fixtureRoot, 15_000, true);
      if (!ctx.isRoot && !ctx.fixtureRoot)
        ctx.err("note: not root: other users' processes holding the GPU cannot be seen");
      if (dc.handover) {
        const snapshot = await host.probe.snapshot(gpu, {
          units: dc.handover.services,
          modules: dc.handover.modules,
        });
        const hp = planHandover(snapshot, dc.handover);
        handover = hp.steps.map(stepView);
        plan = {
          ...plan,
          ok: plan.ok && hp.errors.length === 0,
          errors: [...plan.errors, ...hp.errors],
          warnings: [...plan.warnings, ...hp.warnings],
        };
      } else {
        const held = sessionHoldersError(await host.probe.holders(await host.probe.nodes(gpu)));
        if (held) plan = { ...plan, ok: false, errors: [...plan.errors, held] };
      }
    }
  } else {
    handover = [...handoversFor(state, domain)]
      .sort((a, b) => b.step - a.step)
      .flatMap((r) => {
        const action = inverseText(r.data);
        return action
          ? [
              {
                step: r.step,
                kind: r.data.kind,
                target: r.target,
                action,
                why:
                  r.phase === 'acting' ? 'the step may have acted (crash during prepare)' : 'done at start',
              },
            ]
          : [];
      });
  }
  const view = scripts ? await import('./simulate-scripts.js') : null;
  // A script the hook would refuse to run fails a start as the plan's own refusals do; at release
  // libvirt ignores the hook's failure, and the devices were given back before.
  const scriptErrors = scripts && event === 'prepare' ? view!.scriptRefusals(scripts) : [];
  const ok = plan.ok && scriptErrors.length === 0;
  if (ctx.args.json)
    ctx.out(
      JSON.stringify(
        {
          ...planJson(plan),
          configured: dc !== undefined,
          ok,
          errors: [...plan.errors, ...scriptErrors],
          // Only when there are any: the per-VM scripts of the event, in the order they would run.
          ...(scripts ? { scripts: view!.scriptsJson(scripts) } : {}),
          handover,
        },
        null,
        2,
      ),
    );
  else {
    const lines = dc || recorded ? humanPlan(plan) : [`${domain} ${event}: ok`, ''];
    if (!ok && plan.ok) lines[0] = `${plan.domain} ${plan.event}: REFUSED`;
    if (!dc && !recorded) lines[1] = `  ${domain} is not in the config: the hook only runs its scripts`;
    else if (plan.event === 'release' && plan.devices.length === 0 && scripts)
      lines[1] = '  nothing recorded for this domain: no device to give back';
    if (scripts) {
      // Where the hook runs them: prepare's before the device steps, release's after them.
      const at = scripts.when === 'before' ? 1 : lines.findIndex((l, i) => i > 0 && !l.startsWith('  '));
      lines.splice(at < 0 ? lines.length : at, 0, ...view!.humanScripts(scripts));
    }
    lines.push(...humanHandover(event, handover));
    for (const e of scriptErrors) lines.push(`refused: ${e}`);
    for (const line of lines) ctx.out(line);
  }
  return ok ? EXIT.ok : EXIT.refused;
}

/**
 * The event's per-VM scripts, or null when there are none. The folder is looked for first, without
 * loading the script finder (and fs/promises): most VMs have no scripts, and --simulate starts fast.
 */
async function eventScripts(
  ctx: CliContext,
  domain: string,
  event: 'prepare' | 'release',
): Promise<EventScripts | null> {
  const subop = event === 'prepare' ? 'begin' : 'end';
  if (!existsSync(join(ctx.paths.hookScriptsDir, domain, event, subop))) return null;
  const found = await (await import('./simulate-scripts.js')).scriptsFor(ctx, domain, event);
  return found.scripts.length > 0 ? found : null;
}

/** One hand-over step as `--json` shows it (contract: step, target, action; more fields may come). */
interface HandoverView {
  readonly step: number;
  readonly kind: string;
  readonly target: string;
  readonly action: string;
  readonly why: string;
  readonly verify?: string;
  readonly timeoutSeconds?: number;
  readonly inverse?: string | null;
}

function stepView(s: HandoverStep): HandoverView {
  return {
    step: s.step,
    kind: s.kind,
    target: s.target,
    action: s.action,
    why: s.why,
    verify: s.verify,
    timeoutSeconds: s.timeoutMs / 1000,
    inverse: s.inverse,
  };
}

function humanHandover(event: 'prepare' | 'release', steps: readonly HandoverView[]): string[] {
  if (steps.length === 0) return [];
  const lines = [
    event === 'prepare'
      ? 'hand-over, in order, before the detach:'
      : 'give-back, in order (modules before the reattach):',
  ];
  for (const s of steps) {
    lines.push(`  ${s.step}. ${s.action}`);
    lines.push(`     why: ${s.why}`);
    if (s.verify) lines.push(`     verify: ${s.verify} (within ${s.timeoutSeconds} s)`);
    if (s.inverse) lines.push(`     undo: ${s.inverse}`);
  }
  return lines;
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
