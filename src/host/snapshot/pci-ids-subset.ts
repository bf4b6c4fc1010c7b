/**
 * The lines of pci.ids a host uses: its vendors, their devices, and the subsystems of those devices
 * the host has (the whole file is 1.3 MB; a snapshot needs a few dozen lines). `used` holds
 * "vendor device subvendor subdevice" in lowercase hex.
 */
export function usedPciIds(text: string, used: readonly string[]): string {
  const vendors = new Set<string>();
  const devices = new Set<string>();
  const subsystems = new Set<string>();
  for (const u of used) {
    const [v, d, sv, sd] = u.split(' ');
    if (!v || !d) continue;
    vendors.add(v);
    devices.add(`${v} ${d}`);
    if (sv && sd) subsystems.add(`${v} ${d} ${sv} ${sd}`);
  }
  const out = ['# pci.ids: only the entries of the devices in this snapshot'];
  let vendor: string | null = null;
  let device: string | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('C ')) break; // the class list follows the vendors
    if (/^[0-9a-fA-F]{4} {2}/.test(line)) {
      vendor = line.slice(0, 4).toLowerCase();
      device = null;
      if (vendors.has(vendor)) out.push(line);
    } else if (/^\t[0-9a-fA-F]{4} {2}/.test(line)) {
      device = vendor && `${vendor} ${line.slice(1, 5).toLowerCase()}`;
      if (device && devices.has(device)) out.push(line);
    } else if (/^\t\t[0-9a-fA-F]{4} [0-9a-fA-F]{4} {2}/.test(line)) {
      if (device && subsystems.has(`${device} ${line.slice(2, 11).toLowerCase()}`)) out.push(line);
    }
  }
  return `${out.join('\n')}\n`;
}
