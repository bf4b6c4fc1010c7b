import type { PciCriteria, UsbCriteria } from '../config/model.js';
import { MAX_MATCHED_TEXT } from '../config/regex-safety.js';
import type { PciDevice, UsbDevice } from '../model/device.js';
import { classMatches } from '../model/ids.js';

// One criteria set against one device. All criteria in a set must hold.

export function pciCriteriaHold(c: PciCriteria, d: PciDevice): boolean {
  return (
    (c.address === undefined || c.address.matches(d.address)) &&
    (c.vendor === undefined || c.vendor === d.vendor) &&
    (c.device === undefined || c.device === d.device) &&
    (c.subsystemVendor === undefined || c.subsystemVendor === d.subsystemVendor) &&
    (c.subsystemDevice === undefined || c.subsystemDevice === d.subsystemDevice) &&
    (c.class === undefined || classMatches(d.classCode, c.class)) &&
    (c.driver === undefined || c.driver === d.driver) &&
    (c.name === undefined || c.name.test(pciName(d).slice(0, MAX_MATCHED_TEXT)))
  );
}

export function usbCriteriaHold(c: UsbCriteria, d: UsbDevice): boolean {
  return (
    (c.vendor === undefined || c.vendor === d.vendor) &&
    (c.product === undefined || c.product === d.product) &&
    (c.serial === undefined || c.serial === d.serial) &&
    (c.port === undefined || c.port === d.port) &&
    (c.name === undefined || c.name.test(usbName(d).slice(0, MAX_MATCHED_TEXT)))
  );
}

/** What a `name` criterion is matched against: "<vendor name> <device name>" from pci.ids. */
export function pciName(d: PciDevice): string {
  return [d.vendorName, d.deviceName].filter(Boolean).join(' ');
}

export function usbName(d: UsbDevice): string {
  return [d.manufacturer, d.productName].filter(Boolean).join(' ');
}
