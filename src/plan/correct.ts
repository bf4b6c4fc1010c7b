import type { DomainXml } from '../xml/domain-xml.js';
import { rewriteHostdevs } from '../xml/rewrite.js';
import { currentRecords } from './held.js';
import { type PrepareInput, planStart, resolveAll } from './prepare.js';

export type Correction =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'corrected'; readonly xml: string; readonly moves: readonly string[] }
  | { readonly kind: 'impossible'; readonly reason: string };

/**
 * For an incoming migration or a restore (whose XML libvirt lets the hook replace): point our
 * tagged entries at where their devices are on this host. Only addresses change: nothing is added,
 * adopted or removed, since libvirt checks that the guest ABI stays the same.
 */
export function correctMovedEntries(
  input: Omit<PrepareInput, 'definition'> & { definition: { xml: DomainXml; source: string } },
): Correction {
  const hostdevs = input.definition.xml.hostdevs();
  const tagged = new Map(hostdevs.filter((h) => h.alias).map((h) => [h.alias!, h]));
  const { current } = currentRecords(input.records, input.inventory.bootId);
  const { resolved, unresolved } = resolveAll(input, current, hostdevs);

  const ours = resolved.filter((r) => tagged.has(r.desired.alias));
  const moves = ours.flatMap((r) => {
    const h = tagged.get(r.desired.alias)!;
    if (r.desired.kind === 'usb') return [];
    return h.pciAddress && !h.pciAddress.equals(r.desired.address)
      ? [`${r.planned.name}: ${h.pciAddress} → ${r.desired.address}`]
      : [];
  });
  if (moves.length === 0) return { kind: 'unchanged' };
  const missing = [...tagged.values()].filter(
    (h) => h.ourName && !resolved.some((r) => r.desired.alias === h.alias),
  );
  if (missing.length > 0) {
    return {
      kind: 'impossible',
      reason: `cannot correct the XML for this host: ${unresolved[0]?.reason ?? `${missing[0]!.alias} has no device here`}`,
    };
  }
  const rewrite = rewriteHostdevs(
    input.definition.xml,
    ours.map((r) => r.desired),
    { managedEntries: () => false },
  );
  // Check the corrected XML as a start would: never hand the root disk or the route's NIC over.
  const check = planStart({ ...input, definition: { xml: rewrite.xml, source: 'corrected' } });
  const blocking = check.errors.filter((e) => /refusing to give|IOMMU group/.test(e));
  if (blocking.length > 0) return { kind: 'impossible', reason: blocking[0]! };
  return { kind: 'corrected', xml: rewrite.xml, moves };
}
