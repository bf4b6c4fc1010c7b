import { defaultConfig, loadConfigFile } from '../../config/load.js';
import { executeRelease } from '../../hook/execute.js';
import { releaseFailures, releaseWithHandover } from '../../hook/handover.js';
import { SysfsHostSafety } from '../../host/sysfs/host-safety.js';
import { errorMessage, UsageError } from '../../model/errors.js';
import { loadState } from '../../state/file.js';
import { type CliContext, checkTrust, requireRoot, stateFileOf } from '../context.js';
import { EXIT } from '../exit.js';
import { installFaultSwitch } from '../faults.js';
import {
  definitionStore,
  driverControl,
  inventoryReader,
  makeHandoverHost,
  requireWritableRoot,
} from '../wiring.js';

/**
 * `qemu-hook recover [--vm NAME]... [--dry-run] [--json]`: give back every device recorded for a domain that
 * is not running (a crashed hook, a release that failed, a daemon that died mid-start).
 */
export async function recover(ctx: CliContext): Promise<number> {
  const cfg = (await loadConfigFile(ctx.paths.configFile).catch(() => null))?.config ?? defaultConfig();
  const stateFile = stateFileOf(ctx, cfg);
  if (!ctx.args.dryRun) {
    requireWritableRoot(ctx, 'recover');
    requireRoot(ctx, 'recover');
    installFaultSwitch(ctx.paths);
  }
  checkTrust(ctx, cfg, !ctx.args.dryRun);
  // --dry-run only reads: a corrupt state file stays where it is.
  const [state, bootId] = await Promise.all([
    loadState(stateFile, { readOnly: ctx.args.dryRun }),
    inventoryReader(ctx).bootId(),
  ]);
  const vms = ctx.args.vms;
  const picked = (domain: string) => vms.length === 0 || vms.includes(domain);
  const wanted = [
    ...state.records.filter((r) => picked(r.domain)),
    ...(state.handovers ?? []).filter((h) => picked(h.domain)),
  ];
  const json = (o: {
    running: string[];
    restored: object[];
    failed: object[];
    handoverRestored?: string[];
  }) => ctx.out(JSON.stringify({ dryRun: ctx.args.dryRun, stateFile, ...o }, null, 2));
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

  const log = {
    info() {},
    debug() {},
    warn: (_o: object, m: string) => ctx.err(`warning: ${m}`),
    error: (_o: object, m: string) => ctx.err(`error: ${m}`),
  };
  const clock = { now: () => new Date() };
  const chosen = (domain: string) => picked(domain) && !running.has(domain);
  const handedOver = (state.handovers ?? []).some((h) => chosen(h.domain));
  const handover = handedOver
    ? {
        host: await makeHandoverHost(ctx.paths, ctx.fixtureRoot, 60_000),
        stateFile,
        bootId,
        clock,
        log,
      }
    : null;
  const out = await releaseWithHandover(
    chosen,
    async () => {
      if (!state.records.some((r) => chosen(r.domain))) return { restored: [], failed: [] };
      return executeRelease(
        // The executor reads the state again under its lock: pick records by value, not identity.
        (rec) => chosen(rec.domain),
        {
          control: await driverControl(ctx, cfg),
          safety: new SysfsHostSafety(ctx.paths.sys, ctx.paths.proc),
          stateFile,
          bootId,
          clock,
          log,
          timeoutMs: 60_000,
        },
        { dryRun: ctx.args.dryRun },
      );
    },
    handover,
    { dryRun: ctx.args.dryRun },
  );
  const status = releaseFailures(out).length === 0 ? EXIT.ok : EXIT.refused;
  if (ctx.args.json) {
    json({
      running: [...running],
      restored: [...out.devices.restored],
      failed: [
        ...out.devices.failed,
        ...out.handoverFailed.map((f) => ({ handover: true, error: `${f.target}: ${f.error}` })),
      ],
      ...(out.handoverRestored.length > 0 ? { handoverRestored: [...out.handoverRestored] } : {}),
    });
    return status;
  }
  const given = ctx.args.dryRun ? 'would give back' : 'given back';
  for (const r of out.devices.restored) ctx.out(`${given}: ${r.address} → ${r.driver ?? '(no driver)'}`);
  for (const f of out.devices.failed) ctx.err(`not given back: ${f.address}: ${f.error}`);
  for (const t of out.handoverRestored) ctx.out(`${given}: ${t}`);
  for (const f of out.handoverFailed) ctx.err(`not given back: ${f.target}: ${f.error}`);
  return status;
}
