import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { UsbDevice } from '../../model/device.js';
import { parseHexId } from '../../model/ids.js';
import { PciAddress } from '../../model/pci-address.js';
import {
  errnoCode,
  listDir,
  pciComponents,
  readlinkOrNull,
  readSmall,
  type Warnings,
} from './sysfs-files.js';

// "3-2", "3-4.1": a device. "usb3" is a root hub, "3-2:1.0" an interface: neither is passed through.
const DEVICE_NAME = /^(\d+)-(\d+(?:\.\d+)*)$/;

/** USB devices under `<sys>/bus/usb/devices`, without root hubs and interfaces, sorted by bus and port. */
export function readUsbDevices(sys: string, warnings: Warnings): UsbDevice[] {
  const base = join(sys, 'bus/usb/devices');
  const entries = listDir(base);
  if (!entries) return []; // no USB at all (or no usb core): nothing to report
  const devices: UsbDevice[] = [];
  for (const name of entries) {
    if (!DEVICE_NAME.test(name)) continue;
    const d = readOne(`${base}/${name}`, name, warnings);
    if (d) devices.push(d);
  }
  return devices.sort(byPort);
}

function readOne(dir: string, port: string, warnings: Warnings): UsbDevice | null {
  const what = `USB device ${port}`;
  const read = (file: string, optional: boolean): string | null => {
    // Most devices lack some of the optional strings: probed without the thrown error a failed
    // open costs (several times the system call itself).
    if (optional && !existsSync(`${dir}/${file}`)) return null;
    try {
      return readSmall(`${dir}/${file}`).trim();
    } catch (err) {
      if (!(optional && errnoCode(err) === 'ENOENT')) warnings.unreadable(what, `${dir}/${file}`, err, dir);
      return null;
    }
  };
  const vendorText = read('idVendor', false);
  if (vendorText === null) return null;
  const productText = read('idProduct', false);
  if (productText === null) return null;
  const vendor = parseHexId(vendorText);
  const product = parseHexId(productText);
  if (!vendor || !product) {
    warnings.add(`${what}: unexpected ids "${vendorText}:${productText}"; skipped`);
    return null;
  }
  const busFromName = Number(port.split('-')[0]);
  const busnum = Number(read('busnum', false) ?? busFromName);
  const devnum = Number(read('devnum', false) ?? 0);
  return {
    kind: 'usb',
    port,
    vendor,
    product,
    serial: read('serial', true) || null,
    busnum: Number.isInteger(busnum) ? busnum : busFromName,
    devnum: Number.isInteger(devnum) ? devnum : 0,
    manufacturer: read('manufacturer', true) || null,
    productName: read('product', true) || null,
    controller: controllerOf(dir),
  };
}

/** The last PCI function on the device's sysfs path (…/0000:00:14.0/usb3/3-2): its host controller. */
function controllerOf(link: string): PciAddress | null {
  return PciAddress.tryParse(pciComponents(readlinkOrNull(link) ?? '').at(-1) ?? '');
}

function byPort(a: UsbDevice, b: UsbDevice): number {
  const pa = a.port.split(/[-.]/).map(Number);
  const pb = b.port.split(/[-.]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
