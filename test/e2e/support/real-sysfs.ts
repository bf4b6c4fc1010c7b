// Read-only looks at the machine's own PCI devices: the e2e tests prove they never change, and
// refuse to hand libvirt a <hostdev> address this machine really has.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

const REAL_PCI = '/sys/bus/pci/devices';

export interface RealBinding {
  readonly driver: string | null;
  readonly driverOverride: string | null;
}

function readOrNull(read: () => string): string | null {
  try {
    return read();
  } catch {
    return null;
  }
}

/** Driver and driver_override of every PCI device of this machine (reads only). */
export function realPciBindings(): Record<string, RealBinding> {
  const out: Record<string, RealBinding> = {};
  if (!existsSync(REAL_PCI)) return out;
  for (const address of readdirSync(REAL_PCI).sort()) {
    const dir = join(REAL_PCI, address);
    out[address] = {
      driver: readOrNull(() => basename(readlinkSync(join(dir, 'driver')))),
      driverOverride: readOrNull(() => readFileSync(join(dir, 'driver_override'), 'utf8').trim()),
    };
  }
  return out;
}

/**
 * The tiny domains name fixture addresses in <hostdev managed='no'>. libvirt acts on the real
 * device at such an address (it may reset one that is not on vfio-pci), so an address this machine
 * has must never reach a domain definition: throw before it does.
 */
export function assertNotOnThisMachine(addresses: readonly string[]): void {
  const present = addresses.filter((a) => existsSync(join(REAL_PCI, a)));
  if (present.length > 0) {
    throw new Error(
      `this machine has PCI device(s) ${present.join(', ')}, which the e2e domains name as fixture ` +
        'devices: refusing to let libvirt near them (use a fixture host whose addresses this machine lacks)',
    );
  }
}
