import { defaultConfig, loadConfigFile } from '../../config/load.js';
import { executeRelease } from '../../hook/execute.js';
import { SysfsHostSafety } from '../../host/sysfs/host-safety.js';
import { errorMessage, UsageError } from '../../model/errors.js';
import { loadState } from '../../state/file.js';
import { type CliContext, checkTrust, requireRoot, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { installFaultSwitch } from '../faults.js';
import { definitionStore, driverControl, inventoryReader } from '../wiring.js';

/**
 * `qemu-hook recover [--vm NAME]... [--dry-run] [--json]`: give back every device recorded for a domain that
 * is not running (a crashed hook, a release that failed, a daemon that died mid-start).
 */
export async function recover(ctx: CliContext): Promise<number> {
  const cfg = (await loadConfigFile(ctx.paths.configFile).catch(() => null))?.config ?? defaultConfig();
  const stateFile = stateFileOf(ctx, cfg);
  if (!ctx.args.dryRun) {
    requireRoot(ctx, 'recover');
    installFaultSwitch(ctx.paths);
  }
  checkTrust(ctx, cfg, !ctx.args.dryRun);
  // --dry-run only reads: a corrupt state file stays where it is.
  const [state, inventory] = await Promise.all([
    loadState(stateFile, { readOnly: ctx.args.dryRun }),
    inventoryReader(ctx).read(),
  ]);
  const vms = ctx.args.vms;
  const chosen = (domain: string) => vms.length === 0 || vms.includes(domain);
  const wanted = state.records.filter((r) => chosen(r.domain));
  const json = (o: { running: string[]; restored: object[]; failed: object[] }) =>
    ctx.out(JSON.stringify({ dryRun: ctx.args.dryRun, stateFile, ...o }, null, 2));
  if (wanted.length === 0) {
    if (ctx.args.json) json({ running: [], restored: [], failed: [] });
    else
      ctx.out(
        vms.length > 0
          ? `nothing recorded for ${vms.join(', ')}: nothing to recover`
          : 'nothing recorded: nothing to recover',
      );
    return EXIT.ok;
  }
  // Never pull a device out from under a running VM.
  const store = await definitionStore(ctx, cfg).catch((err) => {
    throw new UsageError(
      `cannot ask libvirt which domains run (${errorMessage(err)}); recover needs that to avoid taking a device from a running VM`,
    );
  });
  const running = new Set<string>();
  for (const d of new Set(wanted.map((r) => r.domain))) if (await store.isActive(d)) running.add(d);
  if (!ctx.args.json) for (const d of running) ctx.out(`${d} is running: its devices stay with it`);

  const out = await executeRelease(
    // The executor reads the state again under its lock: pick records by value, not identity.
    (r) => chosen(r.domain) && !running.has(r.domain),
    {
      control: await driverControl(ctx, cfg),
      safety: new SysfsHostSafety(ctx.paths.sys, ctx.paths.proc),
      stateFile,
      bootId: inventory.bootId,
      clock: { now: () => new Date() },
      log: {
        info() {},
        debug() {},
        warn: (_o, m) => ctx.err(`warning: ${m}`),
        error: (_o, m) => ctx.err(`error: ${m}`),
      },
      timeoutMs: 60_000,
    },
    { dryRun: ctx.args.dryRun },
  );
  if (ctx.args.json) {
    json({ running: [...running], restored: [...out.restored], failed: [...out.failed] });
    return out.failed.length === 0 ? EXIT.ok : EXIT.refused;
  }
  for (const r of out.restored)
    ctx.out(
      `${ctx.args.dryRun ? 'would give back' : 'given back'}: ${r.address} → ${r.driver ?? '(no driver)'}`,
    );
  for (const f of out.failed) ctx.err(`not given back: ${f.address}: ${f.error}`);
  return out.failed.length === 0 ? EXIT.ok : EXIT.refused;
}
