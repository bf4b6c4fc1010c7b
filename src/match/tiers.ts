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
  /** Why a set cannot be evaluated on this host (e.g. `name:` without pci.ids); null when it can. */
  unusable?: (c: C) => string | null;
  /** Folds matches that count as one (the functions of one slot, for `functions: all`). */
  fold?: (found: readonly T[]) => T[];
}): Resolution<T> {
  const { entry, tiers, count } = args;
  for (const [i, c] of tiers.entries()) {
    const which = tiers.length > 1 ? `criteria set ${i + 1} ${c.text}` : c.text;
    const cannot = args.unusable?.(c);
    if (cannot) return { ok: false, reason: `${entry}: ${which}: ${cannot}` };
    const matched = args.candidates.filter((d) => args.holds(c, d));
    const found = args.fold ? args.fold(matched) : matched;
    if (found.length === count) return { ok: true, devices: found, tier: i, criteria: c.text };
    if (found.length > count) {
      return {
        ok: false,
        reason: `${entry}: ${which} matches ${found.length} devices (${found.map(args.describe).join(', ')}), expected ${count}; ${args.differences(found)}`,
        candidates: found.map(args.describe),
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
