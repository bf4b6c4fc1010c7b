import type { Resolution } from './resolution.js';

/**
 * The fallback rule shared by every device type: try the criteria sets in order; the first set
 * that yields exactly `count` devices wins. A set that yields more is ambiguous: stop and say how
 * the candidates differ (falling through to a looser set would only be more ambiguous). A set that
 * yields none hands over to the next; a set that yields too few stops with that finding.
 */
export function resolveTiers<T, C extends { text: string }>(args: {
  entry: string;
  tiers: readonly C[];
  count: number;
  candidates: readonly T[];
  holds: (c: C, d: T) => boolean;
  describe: (d: T) => string;
  differences: (ds: readonly T[]) => string;
  nothingFound: string;
}): Resolution<T> {
  const { entry, tiers, count } = args;
  for (const [i, c] of tiers.entries()) {
    const found = args.candidates.filter((d) => args.holds(c, d));
    const which = tiers.length > 1 ? `criteria set ${i + 1} ${c.text}` : c.text;
    if (found.length === count) return { ok: true, devices: found, tier: i, criteria: c.text };
    if (found.length > count) {
      return {
        ok: false,
        reason: `${entry}: ${which} matches ${found.length} devices (${found.map(args.describe).join(', ')}), expected ${count}; ${args.differences(found)}`,
      };
    }
    if (found.length > 0) {
      return {
        ok: false,
        reason: `${entry}: ${which} matches ${found.length} device${found.length === 1 ? '' : 's'} (${found.map(args.describe).join(', ')}), expected ${count}`,
      };
    }
  }
  const sets =
    tiers.length > 1 ? `any of its ${tiers.length} criteria sets` : (tiers[0]?.text ?? 'its criteria');
  return { ok: false, reason: `${entry}: no device matches ${sets}; ${args.nothingFound}` };
}
