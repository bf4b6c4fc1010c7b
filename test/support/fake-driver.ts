import type { PciAddress } from '../../src/model/pci-address.js';
import type { DriverControl } from '../../src/model/ports.js';

/**
 * A host's driver bindings in memory. `preferred` is the driver the kernel picks on reprobe (which
 * may differ from the one a device had); `failOn` makes the Nth call of an operation throw;
 * `probeLag` is how many reads of the driver link still show none after a driver was bound (a
 * driver that probes asynchronously).
 */
export class FakeDriverControl implements DriverControl {
  readonly calls: string[] = [];
  private readonly counts = new Map<string, number>();
  private readonly hidden = new Map<string, number>();
  probeLag = 0;

  constructor(
    readonly drivers: Map<string, string | null>,
    readonly preferred: Map<string, string | null> = new Map(),
    readonly failOn: { op: string; nth: number; hang?: boolean } | null = null,
  ) {}

  static of(
    bound: Record<string, string | null>,
    preferred: Record<string, string | null> = {},
    failOn: FakeDriverControl['failOn'] = null,
  ) {
    return new FakeDriverControl(new Map(Object.entries(bound)), new Map(Object.entries(preferred)), failOn);
  }

  async detach(a: PciAddress): Promise<void> {
    await this.call('detach', a);
    this.bound(a, 'vfio-pci');
  }
  async reattach(a: PciAddress): Promise<void> {
    await this.call('reattach', a);
    const k = a.toString();
    this.bound(a, this.preferred.has(k) ? this.preferred.get(k)! : null);
  }
  async bindDriver(a: PciAddress, driver: string): Promise<void> {
    await this.call(`bind ${driver}`, a);
    this.bound(a, driver);
  }
  async unbind(a: PciAddress): Promise<void> {
    await this.call('unbind', a);
    this.drivers.set(a.toString(), null);
  }
  async currentDriver(a: PciAddress): Promise<string | null> {
    const k = a.toString();
    const hidden = this.hidden.get(k) ?? 0;
    if (hidden > 0) {
      this.hidden.set(k, hidden - 1);
      return null;
    }
    return this.drivers.get(k) ?? null;
  }

  private bound(a: PciAddress, driver: string | null): void {
    this.drivers.set(a.toString(), driver);
    if (driver !== null) this.hidden.set(a.toString(), this.probeLag);
  }

  private async call(op: string, a: PciAddress): Promise<void> {
    this.calls.push(`${op} ${a}`);
    const kind = op.split(' ')[0]!;
    const n = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, n);
    if (this.failOn && this.failOn.op === kind && this.failOn.nth === n) {
      if (this.failOn.hang) await new Promise(() => {});
      throw new Error(`injected ${kind} failure`);
    }
  }
}
