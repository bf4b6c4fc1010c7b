import type { DomainXml } from './domain-xml.js';
import { childElements, firstChild, selectElements } from './select.js';

/** Whether the definition can take USB devices: libvirt refuses a define otherwise. */
export interface UsbCapacity {
  /** `<controller type='usb' model='none'/>`: "USB is disabled for this domain". */
  readonly disabled: boolean;
  /** Ports left after every USB device of the definition has one; null when it cannot be told (a model we do not know). */
  readonly free: number | null;
}

// Ports per controller model, as libvirt counts them (src/conf/domain_addr.c,
// virDomainUSBAddressControllerModelToPorts); xHCI controllers take a `ports` attribute.
const PORTS: Record<string, number> = {
  'piix3-uhci': 2,
  'piix4-uhci': 2,
  'vt82c686b-uhci': 2,
  ehci: 6,
  'ich9-ehci1': 6,
  'pci-ohci': 3,
  'nec-xhci': 4,
  'qemu-xhci': 4,
  qusb1: 4,
  qusb2: 8,
};
const HUB_PORTS = 8;

export function usbCapacity(dx: DomainXml): UsbCapacity {
  const devices = selectElements('/domain/devices/*', dx.located.doc);
  const controllers = devices.filter((d) => d.tagName === 'controller' && d.getAttribute('type') === 'usb');
  if (controllers.some((c) => c.getAttribute('model') === 'none')) return { disabled: true, free: null };
  let ports = 0;
  for (const c of controllers) {
    // Companion controllers (ich9-uhci1…3 with <master>) share their EHCI master's ports.
    if (firstChild(c, 'master')) continue;
    const model = c.getAttribute('model');
    const known = model === null ? undefined : PORTS[model];
    if (known === undefined) return { disabled: false, free: null };
    const set = Number(c.getAttribute('ports'));
    ports += model?.endsWith('xhci') && Number.isInteger(set) && set > 0 ? set : known;
  }
  // No controller written at all: libvirt adds its default one at define; nothing to count.
  if (controllers.length === 0) return { disabled: false, free: null };
  let used = 0;
  for (const d of devices) {
    if (!takesUsbPort(d)) continue;
    used++;
    if (d.tagName === 'hub') ports += HUB_PORTS;
  }
  return { disabled: false, free: ports - used };
}

function takesUsbPort(d: import('@xmldom/xmldom').Element): boolean {
  const attr = (n: string) => d.getAttribute(n);
  switch (d.tagName) {
    case 'hostdev':
      return attr('type') === 'usb';
    case 'input':
    case 'redirdev':
      return attr('bus') === 'usb';
    case 'hub':
      return attr('type') === 'usb';
    case 'sound':
      return attr('model') === 'usb';
    case 'smartcard':
      return true;
    case 'disk':
      return firstChild(d, 'target')?.getAttribute('bus') === 'usb';
    case 'serial':
      return firstChild(d, 'target')?.getAttribute('type') === 'usb-serial';
    default:
      return childElements(d, 'address').some((a) => a.getAttribute('type') === 'usb');
  }
}
