import type { Inventory, ProtectedDevice } from '../model/device.js';
import type { PciAddress } from '../model/pci-address.js';

/** How to give the console's GPU anyway: hand it over (the desktop comes back after), or force. */
const HANDOVER_HINT =
  ' (add handover: {} to the domain to hand it over from the desktop and back, or set force: true on the entry)';

const WHY: Record<ProtectedDevice['reason'], string> = {
  'root-disk': "it is the controller of the root filesystem's disk",
  'mounted-disk':
    'it is the controller of a disk the host uses (a mounted filesystem, a swap, an md/LVM member)',
  'default-route': 'it carries the default network route',
  'boot-vga': `it is the boot VGA device and drives the console${HANDOVER_HINT}`,
};

/**
 * Why the device at `address` must stay with the host, or null. The boot VGA device may go when
 * its entry says `force: true` or the domain hands it over (`handover`); the root disk's controller
 * and the default route's NIC never.
 */
export function protectionOf(inventory: Inventory, address: PciAddress, force: boolean): string | null {
  const hits = inventory.protectedDevices.filter(
    (p) => p.address.equals(address) && !(force && p.reason === 'boot-vga'),
  );
  if (hits.length === 0) return null;
  // The inventory's detail names the disk, route or console; fall back to the general reason.
  const forceHint = HANDOVER_HINT;
  return hits
    .map((p) =>
      p.detail ? `it is the ${p.detail}${p.reason === 'boot-vga' ? forceHint : ''}` : WHY[p.reason],
    )
    .join('; ');
}
