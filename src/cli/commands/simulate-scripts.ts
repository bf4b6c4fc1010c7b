import type { Script } from '../../hook/scripts.js';
import { findScripts } from '../../hook/scripts-find.js';
import type { CliContext } from '../context.js';

/** The per-VM scripts of one event, found as the hook finds them (same code, same verdicts). */
export interface EventScripts {
  /** "qemu.d/win11/prepare/begin/" */
  readonly folder: string;
  /** Whether they run before the built-in steps (prepare) or after them (release). */
  readonly when: 'before' | 'after';
  readonly scripts: readonly Script[];
}

/** The hook runs prepare's scripts once the plan passed, before the detach; release's after giving back. */
export async function scriptsFor(
  ctx: CliContext,
  domain: string,
  event: 'prepare' | 'release',
): Promise<EventScripts> {
  const subop = event === 'prepare' ? 'begin' : 'end';
  const scripts = await findScripts(ctx.paths.hookScriptsDir, { domain, op: event, subop, extra: '-' });
  return {
    folder: `qemu.d/${domain}/${event}/${subop}/`,
    when: event === 'prepare' ? 'before' : 'after',
    scripts,
  };
}

/** A refused script fails the event the way the hook would report it. */
export function scriptRefusals(s: EventScripts): string[] {
  return s.scripts
    .filter((x) => x.verdict === 'refuse')
    .slice(0, 1)
    .map((x) => `refused to run ${x.path}: ${x.reason}`);
}

export function humanScripts(s: EventScripts): string[] {
  if (s.scripts.length === 0) return [];
  const steps = s.when === 'before' ? 'before the devices are detached' : 'after the devices are given back';
  return [
    `scripts (${s.folder}), in this order, ${steps}:`,
    ...s.scripts.map(
      (x) =>
        `  ${x.verdict === 'run' ? 'run   ' : x.verdict === 'skip' ? 'skip  ' : 'REFUSE'}  ${x.name}${x.reason ? ` (${x.reason})` : ''}`,
    ),
  ];
}

export function scriptsJson(s: EventScripts): object[] {
  return s.scripts.map((x) => ({
    name: x.name,
    path: x.path,
    when: s.when,
    verdict: x.verdict,
    reason: x.reason,
  }));
}
