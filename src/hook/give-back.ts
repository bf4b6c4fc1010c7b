import { errorMessage } from '../model/errors.js';
import { type FaultPoint, faultPoint } from '../model/faults.js';
import { PciAddress } from '../model/pci-address.js';
import type { DriverControl } from '../model/ports.js';
import { withTimeout } from '../model/timeout.js';

export interface GiveBackResult {
  readonly ok: boolean;
  /** The driver bound at the end, null when none. */
  readonly driver: string | null;
  /** What was done, for the log: "reattach", "reattach+bind". */
  readonly steps: readonly string[];
  readonly error?: string;
}

/**
 * Return a device to the driver it had before we took it. libvirt's reattach lets the kernel pick
 * a driver, which is not always the one the device had (a second driver claims the id, or the
 * device had none): so compare, bind the recorded one explicitly if needed, and verify.
 */
export async function giveBack(
  control: DriverControl,
  address: string,
  originalDriver: string | null,
  timeoutMs: number,
): Promise<GiveBackResult> {
  const addr = PciAddress.parse(address);
  const steps: string[] = [];
  const step = async <T>(name: string, work: () => Promise<T>, point?: FaultPoint): Promise<T> => {
    steps.push(name);
    const result = await withTimeout(work(), timeoutMs, `${name} of ${address}`);
    if (point) faultPoint(point);
    return result;
  };
  try {
    let now = await step('read driver', () => control.currentDriver(addr));
    if (now === originalDriver && now !== 'vfio-pci') return { ok: true, driver: now, steps };
    if (now === 'vfio-pci') {
      await step('reattach', () => control.reattach(addr), 'reattach');
      now = await step('read driver', () => control.currentDriver(addr));
    }
    if (now !== originalDriver) {
      if (originalDriver === null) await step('unbind', () => control.unbind(addr), 'unbind');
      else await step(`bind ${originalDriver}`, () => control.bindDriver(addr, originalDriver), 'bind');
      now = await step('read driver', () => control.currentDriver(addr));
    }
    return now === originalDriver
      ? { ok: true, driver: now, steps }
      : {
          ok: false,
          driver: now,
          steps,
          error: `${address} is on ${now ?? 'no driver'}, not ${originalDriver ?? 'no driver'}`,
        };
  } catch (err) {
    return { ok: false, driver: null, steps, error: `${address}: ${errorMessage(err)}` };
  }
}
