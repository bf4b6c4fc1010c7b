import { rmSync } from 'node:fs';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { requireConfig } from '../../config/load.js';
import { redefineAfterRefusal } from '../../hook/redefine.js';
import { FileDefinitionStore } from '../../host/definition-files.js';
import { openHookLog } from '../../host/hook-log.js';
import { hostName } from '../../host/hostname.js';
import { LibvirtConnection } from '../../host/libvirt/connection.js';
import { LibvirtDefinitionStore } from '../../host/libvirt/definition-store.js';
import { exitProcess } from '../../host/libvirt/loader.js';
import { SysfsInventoryReader } from '../../host/sysfs/inventory.js';
import { errorMessage } from '../../model/errors.js';
import { faultPoint } from '../../model/faults.js';
import { hostPaths, underRoot } from '../../model/paths.js';
import type { DefinitionStore } from '../../model/ports.js';
import { loadState } from '../../state/file.js';
import { writeRedefineReport } from '../../state/redefine-outcome.js';
import { installFaultSwitch } from '../faults.js';
import { writeErr } from '../output.js';
import { snapshotRootRefusal } from '../wiring.js';

/**
 * The helper gives up after this long: a libvirt that never lets go of the domain must not leave it
 * behind forever. QEMU_HOOK_REDEFINE_TIME_LIMIT_MS shortens it for tests (libvirt clears the
 * environment of the hook, so the helper it starts always has the default).
 */
const TIME_LIMIT_MS = Number(process.env['QEMU_HOOK_REDEFINE_TIME_LIMIT_MS']) || 180_000;

/**
 * `qemu-hook redefine <domain> redefine|restart`: started detached by the hook (own session, stdio
 * on the log, no libvirt pipes). One at a time per domain, by a pid file under /run.
 */
export async function runRedefineFromCli(positionals: readonly string[]): Promise<number> {
  const [domain, mode] = positionals;
  if (!domain || (mode !== 'redefine' && mode !== 'restart')) {
    writeErr('qemu-hook: redefine is internal: qemu-hook redefine <domain> redefine|restart');
    return 2;
  }
  const root = process.env['QEMU_HOOK_ROOT'] || '/';
  const readOnly = snapshotRootRefusal(root, 'redefine', `QEMU_HOOK_ROOT ${root}`);
  if (readOnly) {
    writeErr(`qemu-hook: ${domain}: refused: ${readOnly}`);
    return 2;
  }
  const paths = hostPaths(root);
  installFaultSwitch(paths);
  const { config } = await requireConfig(paths.configFile, { host: hostName(paths) });
  const log = openHookLog(underRoot(root, config.log.file), config.log.level, { domain, op: 'redefine' });
  const dc = config.domains.get(domain);
  if (!dc) return 0;
  const runDir = underRoot(root, '/run/qemu-hook');
  const pidFile = join(runDir, `redefine-${domain}.pid`);
  if (!(await claim(pidFile))) {
    log.info({ domain }, 'redefine: another helper is already at work for this domain');
    return 0;
  }
  faultPoint('redefine-claim');
  // What status shows: the refused start only said the helper was scheduled.
  const report = (outcome: string, detail?: string) => {
    try {
      writeRedefineReport(runDir, {
        domain,
        mode,
        outcome,
        at: new Date().toISOString(),
        ...(detail ? { detail } : {}),
      });
    } catch (err) {
      log.warn({ domain, err: errorMessage(err) }, 'redefine: cannot write the outcome for status');
    }
  };
  report('working');
  const limit = setTimeout(() => {
    log.error(
      { domain },
      `redefine: gave up after ${TIME_LIMIT_MS / 1000} s (libvirt still busy with the domain?)`,
    );
    report('gave-up', `libvirt was still busy with the domain after ${TIME_LIMIT_MS / 1000} s`);
    log.flush();
    rmSync(pidFile, { force: true });
    exitProcess(3);
  }, TIME_LIMIT_MS);
  limit.unref();
  const libvirt = reachesLibvirt(root, config.libvirtUri);
  const store: DefinitionStore & { close?: () => Promise<void> } = libvirt
    ? new LibvirtDefinitionStore(config.libvirtUri)
    : FileDefinitionStore.of(paths);
  try {
    const outcome = await redefineAfterRefusal(domain, dc, mode === 'restart', {
      store,
      start: async (name) => {
        if (!libvirt) {
          log.info({ domain: name }, 'redefine: fixture host without a libvirt of its own: not started');
          return;
        }
        await LibvirtConnection.withConnection(config.libvirtUri, async (c) =>
          (await c.domain(name)).create(),
        );
      },
      readHost: async () => {
        const inventory = await new SysfsInventoryReader(paths).read();
        const state = await loadState(underRoot(root, config.stateFile), { readOnly: true });
        return { inventory, records: state.records };
      },
      log,
    });
    log.info({ domain, outcome: outcome.outcome }, 'redefine: done');
    report(outcome.outcome, outcome.detail);
    return 0;
  } catch (err) {
    log.error({ domain, err: errorMessage(err) }, 'redefine failed');
    report('failed', errorMessage(err));
    return 1;
  } finally {
    await store.close?.();
    await rm(pidFile, { force: true });
    log.flush();
    clearTimeout(limit);
  }
}

/**
 * On a real host, libvirt. Under a fixture root only a libvirt the test started for it (a URI naming
 * its own socket): the machine's own libvirtd must never see a fixture's definitions.
 */
function reachesLibvirt(root: string, uri: string): boolean {
  return root === '/' || /[?&]socket=/.test(uri);
}

/**
 * One helper per domain, by a pid file; one left by a dead helper is taken over. The pid is written
 * to a file of our own first, which becomes the pid file by link(2) (refused when one exists): a pid
 * file is never seen empty, so a helper just starting is never taken for a dead one.
 */
async function claim(pidFile: string): Promise<boolean> {
  await mkdir(dirname(pidFile), { recursive: true });
  const mine = `${pidFile}.${process.pid}`;
  await rm(mine, { force: true }); // a link or file left under our name is removed, never written through
  await writeFile(mine, String(process.pid), { flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await link(mine, pidFile);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = await readFile(pidFile, 'utf8').catch(() => '');
        const pid = Number(holder.trim());
        if (pid > 0 && alive(pid)) return false;
        // Its helper is dead: take the file over, unless it changed hands meanwhile.
        if ((await readFile(pidFile, 'utf8').catch(() => '')) === holder) await rm(pidFile, { force: true });
      }
    }
    return false;
  } finally {
    await rm(mine, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
