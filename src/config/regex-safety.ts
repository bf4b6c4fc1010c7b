// Config regexes run in V8's backtracking engine against strings others choose (a USB product string
// is whatever the plugged device says). A pattern that can backtrack exponentially would hold the
// hook, and libvirt with it, for minutes. So patterns are kept to a shape that backtracks at most
// polynomially over short inputs, checked when the config is read (`qemu-hook check` reports it).

/** Longer patterns are refused: a device name needs a few words, not a program. */
export const MAX_PATTERN_LENGTH = 200;
/** At most this many unbounded repeats (`*`, `+`, `{n,}`): each multiplies the worst case by the input length. */
export const MAX_UNBOUNDED_REPEATS = 3;
/** Text matched is cut to this length (pci.ids names and USB strings are far shorter). */
export const MAX_MATCHED_TEXT = 256;

/** Why `source` is refused, or null. Assumes `source` compiles. */
export function unsafePattern(source: string): string | null {
  if (source.length > MAX_PATTERN_LENGTH)
    return `longer than ${MAX_PATTERN_LENGTH} characters: shorten it (match a few words of the name)`;
  if (/\\[1-9]|\\k</.test(source)) return 'back-references are not allowed: they can take exponential time';
  if (/\(\?<?[=!]/.test(source)) return 'lookarounds are not allowed: write the words to match instead';

  // Walk the pattern, tracking per open group whether it holds a repeat or an alternation.
  const groups: { repeat: boolean; alternation: boolean }[] = [];
  let unbounded = 0;
  let lastGroup: { repeat: boolean; alternation: boolean } | null = null;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    let closed: { repeat: boolean; alternation: boolean } | null = null;
    if (c === '\\') {
      i++;
    } else if (c === '[') {
      // a class: skip to its end (escapes inside included)
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
    } else if (c === '(') {
      groups.push({ repeat: false, alternation: false });
    } else if (c === ')') {
      closed = groups.pop() ?? null;
    } else if (c === '|') {
      const g = groups[groups.length - 1];
      if (g) g.alternation = true;
    } else {
      const q = quantifierAt(source, i);
      if (q) {
        if (q.unbounded) unbounded++;
        if (q.unbounded || q.max > 10) {
          if (lastGroup?.repeat)
            return 'a repeated group holds another repeat (like (a+)+): this can take exponential time; drop the inner or outer repeat';
          if (lastGroup?.alternation)
            return 'a repeated group holds alternatives (like (a|ab)*): this can take exponential time; use a character class or drop the repeat';
        }
        for (const g of groups) g.repeat = true;
        i = q.end;
      }
    }
    lastGroup = closed;
    if (closed) {
      // what a group holds counts for the groups around it
      const outer = groups[groups.length - 1];
      if (outer) {
        outer.repeat ||= closed.repeat;
        outer.alternation ||= closed.alternation;
      }
    }
  }
  if (unbounded > MAX_UNBOUNDED_REPEATS)
    return `more than ${MAX_UNBOUNDED_REPEATS} unbounded repeats (*, +, {n,}): each one multiplies the time a match can take; use fewer`;
  return null;
}

/** A quantifier starting at `i` (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`, each optionally lazy). */
function quantifierAt(s: string, i: number): { unbounded: boolean; max: number; end: number } | null {
  const c = s[i];
  const lazy = (end: number) => (s[end + 1] === '?' ? end + 1 : end);
  if (c === '*' || c === '+') return { unbounded: true, max: Infinity, end: lazy(i) };
  if (c === '?') return { unbounded: false, max: 1, end: i };
  if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(s.slice(i));
    if (!m) return null;
    const unbounded = m[2] !== undefined && m[3] === '';
    const max = m[2] === undefined ? Number(m[1]) : unbounded ? Infinity : Number(m[3]);
    return { unbounded, max, end: lazy(i + m[0].length - 1) };
  }
  return null;
}
