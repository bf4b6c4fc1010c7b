import * as z from 'zod/mini';

// Each process validates a config or a state file once: compiling validators first (zod's JIT)
// costs more than it saves.
z.config({ jitless: true });

import { PciAddress } from '../model/pci-address.js';

// The state file is the hook's memory between `prepare` and `release` (and across crashes):
// which devices it took from the host, from which driver, for which domain, in which boot.

export const STATE_VERSION = 1;

const canonicalPciAddress = z.string().check(
  z.refine((s: string) => PciAddress.tryParse(s)?.toString() === s, {
    message: 'not a canonical PCI address (e.g. 0000:01:00.0)',
  }),
);

const hexId = z.string().check(z.regex(/^[0-9a-f]{4}$/, 'not a 4-digit lowercase hex id'));

export const StateRecordSchema = z.object({
  /** The domain the device was detached for. */
  domain: z.string().check(z.minLength(1)),
  /** Canonical PCI address, "0000:01:00.0". */
  address: canonicalPciAddress,
  /** The driver bound before detach; null when none was bound. */
  originalDriver: z.nullable(z.string().check(z.minLength(1))),
  /** Kernel boot id at detach time; null when the host did not say (a record is then never stale). */
  bootId: z.nullable(z.string().check(z.minLength(1))),
  /** Write-ahead: `detaching` is recorded before the detach call, `detached` once it returned. */
  phase: z.enum(['detaching', 'detached']),
  /** When the record entered its current phase (ISO 8601). */
  since: z.iso.datetime({ offset: true }),
  /** The config entry that asked for the device. */
  entry: z.string().check(z.minLength(1)),
  /**
   * The device's ids when it was taken ("10de", "2204"): release leaves a device alone whose ids
   * differ. Absent in records written before they were kept; those are released on the other checks.
   */
  vendor: z.optional(hexId),
  device: z.optional(hexId),
});

const unitName = z.string().check(z.minLength(1));

/** What a hand-over step needs to be undone, by kind (see model/handover.ts HandoverTarget). */
const HandoverDataSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('stop-service'), unit: unitName }),
  z.object({
    kind: z.literal('end-session'),
    session: z.string(),
    user: z.string(),
    userUnits: z.array(unitName),
  }),
  z.object({
    kind: z.literal('wait-holders'),
    nodes: z.array(z.object({ path: z.string(), rdev: z.nullable(z.string()), function: z.string() })),
    policy: z.enum(['refuse', 'term', 'kill']),
  }),
  z.object({ kind: z.literal('unbind-vtcon'), name: z.string().check(z.minLength(1)) }),
  z.object({ kind: z.literal('release-firmware-fb'), device: z.string(), driver: z.string() }),
  z.object({
    kind: z.literal('unload-module'),
    module: z.string().check(z.minLength(1)),
    parameters: z.record(z.string(), z.string()),
  }),
]);

/**
 * One step of a single-GPU hand-over, written before it acts (`acting`) and marked `done` once
 * verified. A record stays until its inverse is verified on release (or `recover`).
 */
export const HandoverRecordSchema = z.object({
  domain: z.string().check(z.minLength(1)),
  /** Position in the hand-over: the give-back runs in reverse of it. */
  step: z.int().check(z.minimum(1)),
  target: z.string(),
  bootId: z.nullable(z.string().check(z.minLength(1))),
  phase: z.enum(['acting', 'done']),
  since: z.iso.datetime({ offset: true }),
  /** The step's deadline, for its give-back too. */
  timeoutMs: z.optional(z.int().check(z.positive())),
  data: HandoverDataSchema,
});

export const StateFileSchema = z
  .object({
    version: z.literal(STATE_VERSION),
    records: z.array(StateRecordSchema),
    /** Absent in files written before hand-overs existed, and when none is in progress. */
    handovers: z.optional(z.array(HandoverRecordSchema)),
  })
  .check(
    z.superRefine((state, ctx) => {
      // One record per device: the planner relies on it to say which domain holds a device.
      const seen = new Set<string>();
      state.records.forEach((r, i) => {
        if (seen.has(r.address)) {
          ctx.addIssue({
            code: 'custom',
            path: ['records', i, 'address'],
            message: `duplicate ${r.address}`,
          });
        }
        seen.add(r.address);
      });
    }),
  );

export type StateRecord = Readonly<z.infer<typeof StateRecordSchema>>;
export type StatePhase = StateRecord['phase'];

export type HandoverRecord = Readonly<z.infer<typeof HandoverRecordSchema>>;

export interface StateFile {
  readonly version: typeof STATE_VERSION;
  readonly records: readonly StateRecord[];
  readonly handovers?: readonly HandoverRecord[];
}

export function emptyState(): StateFile {
  return { version: STATE_VERSION, records: [] };
}
