import { DomainXml } from '../../src/xml/domain-xml.js';

/** A PCI hostdev as libvirt stores it; alias optional. */
export function pciHostdev(address: string, alias?: string): string {
  const [dom, bus, rest] = address.split(':') as [string, string, string];
  const [slot, fn] = rest.split('.') as [string, string];
  return `    <hostdev mode='subsystem' type='pci' managed='no'>
      <source>
        <address domain='0x${dom}' bus='0x${bus}' slot='0x${slot}' function='0x${fn}'/>
      </source>${alias ? `\n      <alias name='${alias}'/>` : ''}
    </hostdev>`;
}

export function domainXml(name: string, devices: string[] = []): string {
  return `<domain type='kvm'>
  <name>${name}</name>
  <uuid>4b1f6c2e-0000-4000-8000-000000000001</uuid>
  <memory unit='KiB'>8388608</memory>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${devices.join('\n')}
  </devices>
</domain>
`;
}

export function definition(name: string, devices: string[] = []) {
  return { xml: DomainXml.parse(domainXml(name, devices)), source: 'test' };
}
