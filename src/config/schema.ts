import { z } from 'zod';

// The config file's shape. Every key has a description: `qemu-hook check` and the README's
// reference are written from the same words.

const hexId = z.string().describe('16-bit hex id: "10de", "0x10de", any case');

export const pciCriteriaSchema = z
  .strictObject({
    address: z.string().describe('PCI address "0000:01:00.0"; "*" may stand for the function'),
    vendor: hexId.describe('PCI vendor id'),
    device: hexId.describe('PCI device id'),
    subsystemVendor: hexId.describe('PCI subsystem vendor id'),
    subsystemDevice: hexId.describe('PCI subsystem device id'),
    class: z.string().describe('PCI class code, 2, 4 or 6 hex digits, matched as a prefix ("0300" = VGA)'),
    name: z.string().describe('case-insensitive regular expression over "<vendor name> <device name>" (pci.ids)'),
    driver: z.string().describe('the host driver bound now'),
  })
  .partial();

export const usbCriteriaSchema = z
  .strictObject({
    vendor: hexId.describe('USB vendor id'),
    product: hexId.describe('USB product id'),
    serial: z.string().describe('USB serial number (exact)'),
    port: z.string().describe('USB port path as in sysfs, e.g. "3-2.1"'),
    name: z.string().describe('case-insensitive regular expression over "<manufacturer> <product>"'),
  })
  .partial();

export const sriovCriteriaSchema = z.strictObject({
  pf: z.string().describe('the physical function: its network interface name or PCI address'),
  vf: z.number().int().min(0).optional().describe('a fixed VF index; default: the first free VF'),
});

// `type` may be left out for PCI entries; the discriminated union wants it spelled out.
function withDefaultType(entry: unknown): unknown {
  return entry && typeof entry === 'object' && !Array.isArray(entry) && !('type' in entry)
    ? { ...entry, type: 'pci' }
    : entry;
}

const oneOrMany = <T extends z.ZodType>(t: T) => z.union([t, z.array(t).min(1)]);

const common = {
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]*$/i, 'use letters, digits, "_" and "-" (it becomes the XML alias ua-qemuhook-<name>)')
    .describe('unique per domain; used in messages and as the XML alias ua-qemuhook-<name>'),
  count: z.number().int().min(1).default(1).describe('how many devices the criteria must match'),
  force: z.boolean().default(false).describe('allow the boot VGA device that drives the console'),
};

export const deviceEntrySchema = z.discriminatedUnion('type', [
  z.strictObject({
    ...common,
    type: z.literal('pci'),
    match: oneOrMany(pciCriteriaSchema).describe('one set of criteria, or a list of sets tried in order'),
    functions: z
      .enum(['all', 'one'])
      .default('one')
      .describe('"all": also every other function of the matched slot (e.g. HDMI audio)'),
  }),
  z.strictObject({
    ...common,
    type: z.literal('usb'),
    match: oneOrMany(usbCriteriaSchema).describe('one set of criteria, or a list of sets tried in order'),
  }),
  z.strictObject({
    ...common,
    type: z.literal('sriov'),
    match: oneOrMany(sriovCriteriaSchema).describe('the PF (and optionally the VF index)'),
    mac: z.string().optional().describe('MAC address given to the VF'),
    vlan: z.number().int().min(1).max(4094).optional().describe('VLAN tag for the VF'),
  }),
]);

export const domainSchema = z.strictObject({
  devices: z
    .array(z.preprocess(withDefaultType, deviceEntrySchema))
    .default([])
    .describe('the host devices this domain gets'),
  iommuGroup: z
    .enum(['require', 'detach', 'ignore'])
    .default('require')
    .describe('other devices of an IOMMU group on a host driver: refuse, detach them too, or ignore'),
  onAddressChange: z
    .enum(['refuse', 'redefine', 'restart'])
    .default('redefine')
    .describe('when the definition points at a moved device: refuse only, fix the definition, or fix and start again'),
});

export const configSchema = z.strictObject({
  domains: z.record(z.string(), domainSchema).default({}).describe('per libvirt domain name'),
  libvirt: z
    .strictObject({ uri: z.string().default('qemu:///system').describe('libvirt connection URI') })
    .default({ uri: 'qemu:///system' }),
  stateFile: z.string().default('/var/lib/qemu-hook/state.json').describe('where original drivers are recorded'),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      file: z.string().default('/var/log/libvirt/qemu-hook.log'),
    })
    .default({ level: 'info', file: '/var/log/libvirt/qemu-hook.log' }),
});

/** Keys whose values are hex text even when YAML reads them as numbers (0300 → 300). */
export const HEX_TEXT_KEYS = new Set(['vendor', 'device', 'subsystemVendor', 'subsystemDevice', 'class', 'product']);

export type RawConfig = z.infer<typeof configSchema>;
export type RawDeviceEntry = z.infer<typeof deviceEntrySchema>;
export type RawPciCriteria = z.infer<typeof pciCriteriaSchema>;
export type RawUsbCriteria = z.infer<typeof usbCriteriaSchema>;
export type RawSriovCriteria = z.infer<typeof sriovCriteriaSchema>;
