export interface TinyDomainOptions {
  /** Raw XML placed inside <devices>: <hostdev> and <interface type='hostdev'> elements. */
  readonly hostdevs?: string;
  /** Raw XML placed inside <metadata> (each child needs its own namespace URI). */
  readonly metadata?: string;
  /** 64 by default; TCG boots nothing anyway (no disk), so more is waste. */
  readonly memoryMiB?: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
// Any guest NIC other than a passed-through VF would need a libvirt network or a host bridge.
const HOST_NETWORKING = /<interface\b(?![^>]*\btype\s*=\s*["']hostdev["'])/;

/**
 * The smallest domain a real libvirtd starts under TCG: no disk, no NIC, no graphics, no USB
 * controller, no balloon. The emulator is left to libvirt (the one it finds for x86_64).
 */
export function tinyDomainXml(name: string, opts: TinyDomainOptions = {}): string {
  if (!NAME.test(name)) throw new Error(`tiny domain name must match ${NAME}: ${JSON.stringify(name)}`);
  const memory = opts.memoryMiB ?? 64;
  if (!Number.isInteger(memory) || memory < 16 || memory > 512) {
    throw new Error(`tiny domain memory must be 16..512 MiB: ${memory}`);
  }
  const hostdevs = opts.hostdevs ?? '';
  if (HOST_NETWORKING.test(hostdevs)) {
    throw new Error('tiny domains never get a NIC other than <interface type="hostdev">');
  }
  const metadata = opts.metadata === undefined ? '' : `  <metadata>\n    ${opts.metadata}\n  </metadata>\n`;
  return `<domain type='qemu'>
  <name>${name}</name>
${metadata}  <memory unit='MiB'>${memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
${hostdevs ? `    ${hostdevs}\n` : ''}  </devices>
</domain>
`;
}

/** A <hostdev> for a PCI address given as DDDD:BB:SS.F. */
export function pciHostdevXml(address: string, opts: { managed?: boolean; alias?: string } = {}): string {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(address);
  if (!m) throw new Error(`not a PCI address (DDDD:BB:SS.F): ${address}`);
  const [, domain, bus, slot, fn] = m;
  const alias = opts.alias === undefined ? '' : `<alias name='${opts.alias}'/>`;
  return (
    `<hostdev mode='subsystem' type='pci' managed='${opts.managed ? 'yes' : 'no'}'>` +
    `<source><address domain='0x${domain}' bus='0x${bus}' slot='0x${slot}' function='0x${fn}'/></source>` +
    `${alias}</hostdev>`
  );
}
