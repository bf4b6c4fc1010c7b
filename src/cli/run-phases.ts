import type { InventoryReader } from '../model/ports.js';

/**
 * Where a hook run's time goes, for the debug line at its end (the lab prints the medians): how
 * long Node took to reach the program's first line, then the time spent in each named phase.
 * A resident worker's run (qemu-hook serve) counts from the event's arrival instead (its Node
 * started before the event, off libvirt's wait): startMs is then the worker's part of the
 * hand-over, from accepting the front's connection to the run's first line.
 */
export class RunPhases {
  private readonly originMs: number;
  private readonly originCpu: NodeJS.CpuUsage | undefined;
  private readonly ms: Record<string, number>;

  /** `arrived`: for a resident run, when its worker accepted the event (performance.now()). */
  constructor(resident = false, arrived?: { ms: number; cpu: NodeJS.CpuUsage }) {
    this.originMs = resident ? (arrived?.ms ?? performance.now()) : 0;
    this.originCpu = resident ? (arrived?.cpu ?? process.cpuUsage()) : undefined;
    this.ms = { startMs: Math.round(performance.now() - this.originMs) };
  }

  /** `f`, with the time it takes added to the phase `name` at each call. */
  timed<A extends unknown[], T>(name: string, f: (...a: A) => Promise<T>): (...a: A) => Promise<T> {
    return async (...a: A): Promise<T> => {
      const s = performance.now();
      try {
        return await f(...a);
      } finally {
        this.ms[`${name}Ms`] = Math.round((this.ms[`${name}Ms`] ?? 0) + performance.now() - s);
      }
    };
  }

  inventory(reader: InventoryReader): InventoryReader {
    return {
      read: this.timed('inventory', () => reader.read()),
      bootId: this.timed('bootId', () => reader.bootId()),
    };
  }

  /** The phases, and the run's whole wall and CPU time so far (the process's, unless resident). */
  fields(): Record<string, number> {
    const cpu = process.cpuUsage(this.originCpu);
    return {
      ms: Math.round(performance.now() - this.originMs),
      cpuMs: Math.round((cpu.user + cpu.system) / 1000),
      ...this.ms,
    };
  }
}
