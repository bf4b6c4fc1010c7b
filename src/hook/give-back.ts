import { setTimeout as sleep } from 'node:timers/promises';
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
 * How long a driver may take to show up after a probe. A driver that probes asynchronously
 * (PROBE_PREFER_ASYNCHRONOUS) binds after the write that started it has returned; one that never
 * shows up costs this much, once, on the way to a failure.
 */
export const DRIVER_SETTLE_MS = 10_000;

/**
 * Return a device to the driver it had before we took it. libvirt's reattach lets the kernel pick
 * a driver, which is not always the one the device had (a second driver claims the id, or the
 * device had none): so compare, bind the recorded one explicitly if needed, and verify. No fixed
 * pause anywhere: the verification polls the driver link until it shows the driver, or gives up.
 */
export async function giveBack(
  control: DriverControl,
  address: string,
  originalDriver: string | null,
  timeoutMs: number,
  settleMs = DRIVER_SETTLE_MS,
  /** The driver the caller just read (null: none); read here when not given. */
  current?: string | null,
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
    let now = current !== undefined ? current : await step('read driver', () => control.currentDriver(addr));
    if (now === originalDriver && now !== 'vfio-pci') return { ok: true, driver: now, steps };
    if (now === 'vfio-pci') {
      await step('reattach', () => control.reattach(addr), 'reattach');
      now = await step('read driver', () => control.currentDriver(addr));
    }
    if (now !== originalDriver) {
      // The kernel picked another driver, or none yet (an asynchronous probe may still be on its
      // way; binding the original then is harmless: the override names the same driver).
      if (originalDriver === null) await step('unbind', () => control.unbind(addr), 'unbind');
      else await step(`bind ${originalDriver}`, () => control.bindDriver(addr, originalDriver), 'bind');
      steps.push('wait for driver');
      now = await driverSettled(control, addr, originalDriver, settleMs);
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

/**
 * The driver of `address` once it is `want`, or whatever it is when `settleMs` has passed. Polls
 * the driver link, at first every millisecond, then less often (up to every 25 ms).
 */
export async function driverSettled(
  control: DriverControl,
  address: PciAddress,
  want: string | null,
  settleMs: number,
): Promise<string | null> {
  const end = Date.now() + settleMs;
  let pause = 1;
  for (;;) {
    const now = await control.currentDriver(address);
    if (now === want || Date.now() >= end) return now;
    await sleep(Math.min(pause, Math.max(1, end - Date.now())));
    pause = Math.min(pause * 2, 25);
  }
}
