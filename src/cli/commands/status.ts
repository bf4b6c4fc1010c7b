import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { loadConfigFile } from '../../config/load.js';
import { underRoot } from '../../model/paths.js';
import { inverseText } from '../../plan/handover.js';
import { currentRecords } from '../../plan/held.js';
import { loadState } from '../../state/file.js';
import { type RedefineReport, readRedefineReports } from '../../state/redefine-outcome.js';
import type { CliContext } from '../context.js';
import { checkTrust, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { table } from '../table.js';
import { inventoryReader } from '../wiring.js';

/** `qemu-hook status`: which devices the state file says are held, by whom, from which driver. */
export async function status(ctx: CliContext): Promise<number> {
  // status must work with a broken config too: it is what you run when something went wrong.
  const cfg = (await loadConfigFile(ctx.paths.configFile).catch(() => null))?.config ?? null;
  const file = stateFileOf(ctx, cfg);
  checkTrust(ctx, cfg, false);
  // Only reads: a corrupt state file is reported and left where it is.
  const [state, inventory] = await Promise.all([
    loadState(file, { readOnly: true }),
    inventoryReader(ctx).read(),
  ]);
  const vms = ctx.args.vms;
  const records = state.records.filter((r) => vms.length === 0 || vms.includes(r.domain));
  const { current, stale } = currentRecords(records, inventory.bootId);
  const kept = await keptCorrupt(file);
  for (const k of kept)
    ctx.err(
      `note: ${k} is a state file that could not be read and was kept aside; its devices may still be on vfio-pci (see qemu-hook devices)`,
    );
  const helpers = readRedefineReports(underRoot(ctx.paths.root, '/run/qemu-hook'));
  const driverOf = (address: string) =>
    inventory.pci.find((d) => d.address.toString() === address)?.driver ?? null;
  const handovers = state.handovers ?? [];
  if (ctx.args.json) {
    const withDriver = (r: (typeof current)[number]) => ({ ...r, currentDriver: driverOf(r.address) });
    ctx.out(
      JSON.stringify(
        {
          stateFile: file,
          bootId: inventory.bootId,
          records: current.map(withDriver),
          stale: stale.map(withDriver),
          redefine: helpers,
          handovers,
        },
        null,
        2,
      ),
    );
    return EXIT.ok;
  }
  for (const line of helperLines(helpers)) ctx.out(line);
  if (records.length === 0 && handovers.length === 0) {
    ctx.out(`no devices held${vms.length > 0 ? ` by ${vms.join(', ')}` : ''} (${file})`);
    return EXIT.ok;
  }
  if (handovers.length > 0) {
    // What the host's desktop still lacks: each recorded step's give-back is still due.
    ctx.out('hand-over in progress or not given back (what the host still lacks):');
    for (const line of table(
      ['DOMAIN', 'STEP', 'TAKEN', 'PHASE', 'GIVE-BACK', 'SINCE'],
      [...handovers]
        .sort((a, b) => a.domain.localeCompare(b.domain) || a.step - b.step)
        .map((h) => [
          h.domain,
          String(h.step),
          h.target,
          h.phase === 'acting' ? 'acting (crash?)' : 'done',
          inverseText(h.data) ?? '-',
          h.since,
        ]),
    ))
      ctx.out(line);
    if (handovers.some((h) => h.phase === 'acting'))
      ctx.out('a hand-over did not finish (crash?): run qemu-hook recover once the domain is stopped');
    if (state.records.length === 0) return EXIT.ok;
  }
  ctx.out(`${file}:`);
  for (const line of table(
    ['DOMAIN', 'DEVICE', 'ADDRESS', 'ORIGINAL', 'NOW', 'PHASE', 'SINCE'],
    [...current, ...stale].map((r) => [
      r.domain,
      r.entry,
      r.address,
      r.originalDriver ?? '(none)',
      driverOf(r.address) ?? '(none)',
      stale.includes(r) ? 'stale (earlier boot)' : r.phase,
      r.since,
    ]),
  ))
    ctx.out(line);
  if (current.some((r) => r.phase === 'detaching'))
    ctx.out('a detach did not finish (crash?): run qemu-hook recover once the domain is stopped');
  return EXIT.ok;
}

/** What the redefine helper did after each refused stale start of this boot. */
function helperLines(reports: readonly RedefineReport[]): string[] {
  const said: Record<string, string> = {
    working: 'at work (waiting for libvirt to let go of the domain)',
    redefined: 'definition updated: start the VM again',
    restarted: 'definition updated and the VM started again',
    unchanged: 'nothing to do: the definition was already in step',
    running: 'left alone: the VM was running by then',
    undefined: 'nothing to do: the domain is no longer defined',
    refused: 'not written: the corrected definition would be refused too',
    failed: 'failed',
    'gave-up': 'gave up',
  };
  return reports.map((r) => {
    const fix = ['refused', 'failed', 'gave-up'].includes(r.outcome)
      ? `; run qemu-hook apply --vm ${r.domain}`
      : '';
    return `redefine helper, ${r.domain} (${r.at}): ${said[r.outcome] ?? r.outcome}${r.detail ? `: ${r.detail}` : ''}${fix}`;
  });
}

/** State files moved aside as unreadable (`state.json.corrupt[.<time>]`): the user should know. */
async function keptCorrupt(file: string): Promise<string[]> {
  const names = await readdir(dirname(file)).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(`${basename(file)}.corrupt`)).map((n) => join(dirname(file), n));
}
