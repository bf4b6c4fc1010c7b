import type { UsbEntry } from '../config/model.js';
import type { Inventory, UsbDevice } from '../model/device.js';
import { usbCriteriaHold } from './criteria.js';
import type { UsbResolution } from './resolution.js';
import { resolveTiers } from './tiers.js';

export function resolveUsb(entry: UsbEntry, inventory: Inventory): UsbResolution {
  return resolveTiers({
    entry: entry.name,
    tiers: entry.tiers,
    count: entry.count,
    candidates: inventory.usb,
    holds: usbCriteriaHold,
    describe: usbLabel,
    differences: (ds) => {
      const bySerial = new Set(ds.map((d) => d.serial ?? '')).size === ds.length && ds.every((d) => d.serial);
      return bySerial
        ? 'tell them apart with serial (each has its own) or port'
        : 'tell them apart with port (they share a serial)';
    },
    nothingFound: 'is it plugged in? run `qemu-hook devices` to see what the host has',
  });
}

export function usbLabel(d: UsbDevice): string {
  return `${d.vendor}:${d.product} at port ${d.port}${d.serial ? ` serial ${d.serial}` : ''}`;
}

/** USB devices that share vendor and product with `d` (libvirt refuses vendor/product alone then). */
export function usbTwins(d: UsbDevice, inventory: Inventory): UsbDevice[] {
  return inventory.usb.filter((u) => u !== d && u.vendor === d.vendor && u.product === d.product);
}
