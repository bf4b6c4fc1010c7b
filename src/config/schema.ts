import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';

// Each process validates a config or a state file once: compiling validators first (zod's JIT)
// costs more than it saves. zod/mini carries no messages of its own ("Invalid input"): English.
z.config({ jitless: true, ...en() });

// The config file's shape. Every key has a description (`qemu-hook check` and the README's
// reference use the same words). zod/mini rather than classic zod: the hook starts a process per
// VM event, and mini loads in a fraction of the time.

/** Attach a description to a schema (zod/mini's spelling of `.describe()`). */
function doc<T extends z.ZodMiniType>(schema: T, description: string): T {
  return schema.check(z.describe(description));
}

const hexId = (what: string) => doc(z.string(), `${what}: 16-bit hex id, "10de" or "0x10de", any case`);

export const pciCriteriaSchema = z.partial(
  z.strictObject({
    address: doc(z.string(), 'PCI address "0000:01:00.0"; "*" may stand for the function'),
    vendor: hexId('PCI vendor id'),
    device: hexId('PCI device id'),
    subsystemVendor: hexId('PCI subsystem vendor id'),
    subsystemDevice: hexId('PCI subsystem device id'),
    class: doc(z.string(), 'PCI class code, 2, 4 or 6 hex digits, matched as a prefix ("0300" = VGA)'),
    name: doc(z.string(), 'case-insensitive regular expression over "<vendor name> <device name>" (pci.ids)'),
    driver: doc(z.string(), 'the host driver bound now'),
  }),
);

export const usbCriteriaSchema = z.partial(
  z.strictObject({
    vendor: hexId('USB vendor id'),
    product: hexId('USB product id'),
    serial: doc(z.string(), 'USB serial number (exact)'),
    port: doc(z.string(), 'USB port path as in sysfs, e.g. "3-2.1"'),
    name: doc(z.string(), 'case-insensitive regular expression over "<manufacturer> <product>"'),
  }),
);

export const sriovCriteriaSchema = z.strictObject({
  pf: doc(z.string(), 'the physical function: its network interface name or PCI address'),
  vf: z.optional(doc(z.int().check(z.minimum(0)), 'a fixed VF index; default: the first free VF')),
});

const oneOrMany = <T extends z.ZodMiniType>(t: T) => z.union([t, z.array(t).check(z.minLength(1))]);

const common = {
  name: doc(
    z
      .string()
      .check(
        z.regex(
          /^[a-z0-9][a-z0-9_-]*$/i,
          'use letters, digits, "_" and "-" (it becomes the XML alias ua-qemuhook-<name>)',
        ),
      ),
    'unique per domain; used in messages and as the XML alias ua-qemuhook-<name>',
  ),
  count: z._default(doc(z.int().check(z.minimum(1)), 'how many devices the criteria must match'), 1),
  force: z._default(doc(z.boolean(), 'allow the boot VGA device that drives the console'), false),
};

export const deviceEntrySchema = z.discriminatedUnion('type', [
  z.strictObject({
    ...common,
    type: z.literal('pci'),
    match: doc(oneOrMany(pciCriteriaSchema), 'one set of criteria, or a list of sets tried in order'),
    functions: z._default(
      doc(z.enum(['all', 'one']), '"all": also every other function of the matched slot (e.g. HDMI audio)'),
      'one',
    ),
  }),
  z.strictObject({
    ...common,
    type: z.literal('usb'),
    match: doc(oneOrMany(usbCriteriaSchema), 'one set of criteria, or a list of sets tried in order'),
  }),
  z.strictObject({
    ...common,
    type: z.literal('sriov'),
    match: doc(oneOrMany(sriovCriteriaSchema), 'the PF (and optionally the VF index)'),
    mac: z.optional(doc(z.string(), 'MAC address given to the VF')),
    vlan: z.optional(doc(z.int().check(z.minimum(1), z.maximum(4094)), 'VLAN tag for the VF')),
  }),
]);

// `type` may be left out for PCI entries; the discriminated union wants it spelled out.
function withDefaultType(entry: unknown): unknown {
  return entry && typeof entry === 'object' && !Array.isArray(entry) && !('type' in entry)
    ? { ...entry, type: 'pci' }
    : entry;
}

export const handoverSchema = z.strictObject({
  services: z._default(
    doc(
      z.array(z.string().check(z.minLength(1))),
      'extra systemd units stopped before the hand-over (only those active) and started after ("nvidia-persistenced")',
    ),
    [],
  ),
  modules: z._default(
    doc(
      z.array(z.string().check(z.regex(/^[A-Za-z0-9_-]+$/, 'a kernel module name, e.g. nvidia_drm'))),
      'kernel modules unloaded in this order when unused, loaded again in reverse with their saved parameters',
    ),
    [],
  ),
  timeout: z._default(
    doc(
      z.number().check(z.positive(), z.maximum(600)),
      'seconds each step may take before it counts as failed',
    ),
    15,
  ),
  holders: z._default(
    doc(
      z.enum(['refuse', 'term', 'kill']),
      'processes still holding the GPU at the timeout: refuse naming them (default), send SIGTERM, or SIGTERM then SIGKILL',
    ),
    'refuse',
  ),
});

export const domainSchema = z.strictObject({
  devices: z._default(
    doc(
      z.array(z.pipe(z.transform(withDefaultType), deviceEntrySchema)),
      'the host devices this domain gets',
    ),
    [],
  ),
  iommuGroup: z._default(
    doc(
      z.enum(['require', 'detach', 'ignore']),
      'other devices of an IOMMU group on a host driver: refuse, detach them too, or ignore',
    ),
    'require',
  ),
  onAddressChange: z._default(
    doc(
      z.enum(['refuse', 'redefine', 'restart']),
      'when the definition points at a moved device: refuse only, fix the definition, or fix and start again',
    ),
    'redefine',
  ),
  handover: z.optional(
    doc(
      z.nullable(handoverSchema),
      'single GPU: hand the GPU from the desktop to the VM and back ({} = on, with detection)',
    ),
  ),
});

/** libvirt waits for the hook without limit while it holds the domain: keep it responsive. */
export const DEFAULT_LIMITS = { scriptSeconds: 60, hookSeconds: 120 } as const;

const topLevelShape = {
  libvirt: z._default(
    z.strictObject({ uri: z._default(doc(z.string(), 'libvirt connection URI'), 'qemu:///system') }),
    { uri: 'qemu:///system' },
  ),
  stateFile: z._default(
    doc(z.string(), 'where original drivers are recorded'),
    '/var/lib/qemu-hook/state.json',
  ),
  log: z._default(
    z.strictObject({
      level: z._default(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info'),
      file: z._default(z.string(), '/var/log/libvirt/qemu-hook.log'),
    }),
    { level: 'info', file: '/var/log/libvirt/qemu-hook.log' },
  ),
  limits: z._default(
    z.strictObject({
      scriptSeconds: z._default(
        doc(
          z.number().check(z.positive(), z.maximum(3600)),
          'a per-VM script still running after this long is stopped (with everything it started); a start then fails',
        ),
        DEFAULT_LIMITS.scriptSeconds,
      ),
      hookSeconds: z._default(
        doc(
          z.number().check(z.positive(), z.maximum(3600)),
          'one hook run may take this long: past it a start gives back what it took and fails, other events end',
        ),
        DEFAULT_LIMITS.hookSeconds,
      ),
    }),
    { ...DEFAULT_LIMITS },
  ),
};

const HOSTS_DOC =
  'per hostname or glob (web*, gpu-?): domains that replace the shared entries of the same name on that host';

export const configSchema = z.strictObject({
  domains: z._default(doc(z.record(z.string(), domainSchema), 'per libvirt domain name'), {}),
  hosts: z._default(
    doc(
      z.record(z.string(), z.strictObject({ domains: z._default(z.record(z.string(), domainSchema), {}) })),
      HOSTS_DOC,
    ),
    {},
  ),
  ...topLevelShape,
});

/**
 * Everything outside `domains.<name>`: each domain is validated on its own, so that a problem in
 * one refuses only that domain.
 */
export const topLevelSchema = z.strictObject({
  domains: z._default(
    doc(z.record(z.string(), z.unknown()), 'per libvirt domain name'),
    {} as Record<string, unknown>,
  ),
  hosts: z._default(
    doc(
      z.record(
        z.string(),
        z.strictObject({
          domains: z._default(z.record(z.string(), z.unknown()), {} as Record<string, unknown>),
        }),
      ),
      HOSTS_DOC,
    ),
    {} as Record<string, { domains: Record<string, unknown> }>,
  ),
  ...topLevelShape,
});

/** The keys each part of the config takes, for "did you mean" on a misspelt one. */
export const KNOWN_KEYS = {
  top: Object.keys(configSchema.shape),
  libvirt: ['uri'],
  log: ['level', 'file'],
  domain: Object.keys(domainSchema.shape),
  entry: {
    pci: Object.keys(deviceEntrySchema._zod.def.options[0].shape),
    usb: Object.keys(deviceEntrySchema._zod.def.options[1].shape),
    sriov: Object.keys(deviceEntrySchema._zod.def.options[2].shape),
  },
  criteria: {
    pci: Object.keys(pciCriteriaSchema.shape),
    usb: Object.keys(usbCriteriaSchema.shape),
    sriov: Object.keys(sriovCriteriaSchema.shape),
  },
} as const;

/** Keys whose values are hex text even when YAML reads them as numbers (0300 → 300). */
export const HEX_TEXT_KEYS = new Set([
  'vendor',
  'device',
  'subsystemVendor',
  'subsystemDevice',
  'class',
  'product',
]);

export type RawConfig = z.infer<typeof configSchema>;
export type RawHandover = z.infer<typeof handoverSchema>;
export type RawDeviceEntry = z.infer<typeof deviceEntrySchema>;
export type RawPciCriteria = z.infer<typeof pciCriteriaSchema>;
export type RawUsbCriteria = z.infer<typeof usbCriteriaSchema>;
export type RawSriovCriteria = z.infer<typeof sriovCriteriaSchema>;
