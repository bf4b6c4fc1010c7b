// While a worker waits for its event, it rehearses the event's reading and planning: the host's
// inventory, each configured VM's start plan against its definition file, each recorded device's
// release checks, a log line into nowhere; then a VM's whole start and stop through the hook's own
// code on a sandbox (rehearsal-sandbox.ts). V8 compiles a function when it first runs and
// optimises what runs often, so an event in a rehearsed worker runs code that is already warm
// (measured: a release 20 -> 14 ms of the worker's time on the bench's 300-device host; a start
// 0.35 -> 0.24 s in the lab's guest; the sandbox's run took a spaced start on the bench's host
// 48.7 -> 43.4 ms).
//
// Nothing of the host is written, by construction: the steps call only readers and planners, and
// the sandbox's run has its state file in a private temporary folder, drivers in memory, no
// scripts, no log file and never libvirt (an idle worker calling libvirt while libvirt waits for a
// hook could wait on the very domain the hook holds); the worker adds the event's hand-over, on a
// socket of its own in a private temporary folder, removed after. It runs at a lower CPU priority,
// in steps, and stops at the first step boundary once the worker has an event. One waiting worker
// rehearses at a time, when the server says so (server.ts): never while an event runs, and a
// worker that listens for events only after a quiet second (events that come in a burst, such as
// the release after a failed start, find it between steps). A worker listens once it has
// rehearsed (worker.ts), or earlier when no other waiting worker listens: the event goes to a
// warm worker, and seldom to one in the middle of a step. Should a rehearsing one take it, the
// sandbox's run ends at its next step and the event waits for that (idle()), never running
// beside it.
import { getPriority, setPriority } from 'node:os';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Config } from '../../config/model.js';
import { FileDefinitionStore } from '../../host/definition-files.js';
import { rehearsalLog } from '../../host/hook-log.js';
import { SysfsHostSafety } from '../../host/sysfs/host-safety.js';
import { SysfsInventoryReader } from '../../host/sysfs/inventory.js';
import type { Inventory } from '../../model/device.js';
import { type HostPaths, underRoot } from '../../model/paths.js';
import { PciAddress } from '../../model/pci-address.js';
import { planStart } from '../../plan/prepare.js';
import { planRelease } from '../../plan/release.js';
import { loadState } from '../../state/file.js';
import type { StateRecord } from '../../state/schema.js';
import { DomainXml } from '../../xml/domain-xml.js';
import { trustProblem } from '../commands/hook.js';
import { rehearseStartAndStop } from './rehearsal-sandbox.js';

/**
 * Rounds of the whole rehearsal. More rounds warm more (in one process, a start after 1, 3, 6 and
 * 10 rounds of the whole event: ~25, 23-28, 19-22 and 19-26 ms), but a worker still rehearsing when
 * an event comes costs that event: in `npm run bench`, whose spaced events come 1.5 s after others,
 * 6 rounds made the spaced start slower than 3 (46.6 and 51.6 ms against 36.4 and 48.4, same
 * session, alternating builds).
 */
const ROUNDS = 3;
/** VMs planned per round: enough to compile every planner, bounded for a config of hundreds. */
const DOMAINS_PER_ROUND = 3;
/** Recorded devices checked per round, for the same reason. */
const RECORDS_PER_ROUND = 8;

/**
 * The rehearsal of one worker: `start` once it is ready, `stop` the moment it takes its event
 * (the event runs at the worker's own priority again; the worker accepts its event only after the
 * step under way, which therefore ends at the lower priority). Never throws and never writes: a
 * host it cannot read only makes the rehearsal shorter.
 */
export class Rehearsal {
  private stopped = false;
  private restorePriority = (): void => {};
  /** The step under way (settled when none is). */
  private current: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly paths: HostPaths,
    private readonly config: Config | null,
    /** A wait before the first step (the worker's is 0: the server keeps the quiet second, server.ts). */
    private readonly quietMs = 0,
    /** Resolves true when this worker may rehearse now (one of the waiting workers at a time), false: never. */
    private readonly mayRehearse: () => Promise<boolean> = async () => true,
    /** The event's hand-over to the worker (the worker's own, on a private socket): a step of each round. */
    private readonly handOver?: () => Promise<unknown>,
  ) {}

  /** Steps in the whole rehearsal (every round). */
  get steps(): number {
    if (!this.config) return 0;
    const domains = Math.min(this.config.domains.size, DOMAINS_PER_ROUND);
    return ROUNDS * ((this.handOver ? 3 : 2) + domains + (domains > 0 ? 1 : 0));
  }

  /** Resolves with the number of steps that ran through (all of them, unless stopped or unreadable). */
  start(): Promise<number> {
    return this.run().finally(() => this.restorePriority());
  }

  stop(): void {
    this.stopped = true;
    this.restorePriority();
    this.restorePriority = () => {};
  }

  /** Resolves once no step is under way (a stopped rehearsal's last step has ended). */
  idle(): Promise<void> {
    return this.current.then(() => {});
  }

  private async run(): Promise<number> {
    let ran = 0;
    if (!this.config) return ran;
    await sleep(this.quietMs, undefined, { ref: false });
    // Nothing is read on the word of a config someone other than root can change (the event
    // refuses it too): its stateFile could name a FIFO that would hold the worker forever.
    if (this.stopped || trustProblem(this.paths, this.config)) return ran;
    if (!(await this.mayRehearse()) || this.stopped) return ran;
    this.restorePriority = lowerPriority();
    const steps = [
      ...(this.handOver ? [this.handOver] : []),
      ...rehearsalSteps(this.paths, this.config, () => this.stopped),
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const step of steps) {
        await nextTurn(); // the event's message is taken between steps
        if (this.stopped) return ran;
        const running = Promise.resolve().then(step);
        this.current = running.catch(() => {});
        try {
          await running;
          ran++;
        } catch {
          // a rehearsal that fails teaches V8 less; the event reads and reports for itself
        }
      }
    }
    if (!this.stopped) collectGarbage();
    return ran;
  }
}

/**
 * What the rehearsal allocated, collected now rather than during the event: left to V8, the grown
 * heap was marked and compacted in the middle of the next event (in the lab's guest 0.1-0.2 s of a
 * hand-over). Node has no call for it without --expose-gc, which the startup snapshot would not
 * accept as a start flag; set at run time it makes gc() reachable from a fresh context.
 */
function collectGarbage(): void {
  try {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  } catch {
    // left to V8
  }
}

/**
 * The rehearsal gives way to what the machine is doing (a VM starting beside it); the event must
 * not, so only a worker that can raise its priority back (root) lowers it. Returns the undo.
 */
function lowerPriority(): () => void {
  if (process.getuid?.() !== 0) return () => {};
  try {
    const was = getPriority();
    setPriority(Math.min(was + 10, 19));
    return () => {
      try {
        setPriority(was);
      } catch {
        // stays lower: slower, not wrong
      }
    };
  } catch {
    return () => {};
  }
}

function rehearsalSteps(paths: HostPaths, config: Config, stopped: () => boolean): (() => unknown)[] {
  const inventoryReader = new SysfsInventoryReader(paths);
  const definitions = FileDefinitionStore.of(paths);
  const stateFile = underRoot(paths.root, config.stateFile);
  const log = rehearsalLog();
  const domains = [...config.domains].slice(0, DOMAINS_PER_ROUND);
  // What the steps pass on within a round: the host as read, and the devices a release would
  // check (those recorded, else those the start plans would take).
  let host: { inventory: Inventory; records: readonly StateRecord[] } | null = null;
  let planned: string[] = [];
  let whole = 0;
  return [
    async () => {
      host = {
        inventory: inventoryReader.readSync(),
        records: (await loadState(stateFile, { readOnly: true })).records,
      };
      planned = [];
    },
    // One VM per step: an event waits for at most one of them.
    ...domains.map(([domain, dc]) => async () => {
      if (!host) throw new Error('the host was not read');
      const found = await definitions.persistentXml(domain);
      const plan = planStart({
        domain,
        config: dc,
        inventory: host.inventory,
        definition: found ? { xml: DomainXml.parse(found.xml), source: found.source } : null,
        records: host.records,
      });
      log.info({ domain, devices: plan.devices.map((d) => `${d.name}=${d.address ?? 'usb'}`) }, 'plan ok');
      planRelease(domain, host.inventory, host.records);
      planned.push(...plan.devices.flatMap((d) => d.address ?? []));
    }),
    async () => {
      // A release's checks of each recorded device, with a safety reader of its own (it keeps what
      // it read of the host's disks and routes, which the event must read afresh).
      if (!host) throw new Error('the host was not read');
      const safety = new SysfsHostSafety(paths.sys, paths.proc);
      await inventoryReader.bootId();
      const recorded = host.records.map((r) => r.address);
      const addresses = (recorded.length > 0 ? recorded : planned).flatMap(
        (a) => PciAddress.tryParse(a) ?? [],
      );
      for (const address of addresses.slice(0, RECORDS_PER_ROUND)) {
        await safety.ids(address);
        await safety.protection(address);
        log.info(
          { address: address.toString(), steps: ['reattach', 'read driver'] },
          'given back to original driver',
        );
      }
      host = null;
    },
    // One VM's start and stop, run whole on a sandbox: each round the next of those planned.
    ...(domains.length > 0
      ? [
          async () => {
            const [domain] = domains[whole++ % domains.length]!;
            if ((await rehearseStartAndStop(paths, config, domain, inventoryReader, stopped)) === null)
              throw new Error(`${domain}: no definition file to rehearse its start with`);
          },
        ]
      : []),
  ];
}
