// A seeded generator for the malformed-input suite: the same seed gives the same cases, so a
// failure can be replayed (RELIABILITY_SEED=<n> npm run test:reliability).
import { dump as yamlDump, load as yamlLoad } from 'js-yaml';

/** mulberry32: small, fast, and good enough to pick test cases. */
export class Random {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Values a careless user or a broken tool might put anywhere. */
const ODD_VALUES: readonly unknown[] = [
  null,
  0,
  -1,
  3.5,
  65536,
  1e308,
  '',
  ' ',
  'x'.repeat(300),
  [],
  {},
  true,
  '0x',
  '0xzz',
  '(',
  '[a-',
  '*',
  'etc/passwd',
  'ü-ñ',
  '0000:01:00.0',
  '0000:zz:00.0',
  '10de',
  'all',
  'one',
  'pci',
  'usb',
  'floppy',
  ['a', 1, null],
  { address: '0000:01:00.0' },
  '\u0000',
  '"',
  "'",
  '#',
  ': :',
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path into a JSON-like value, for picking one to break. */
function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [at];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...paths(x, [...at, i]));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

function setAt(v: Json, path: (string | number)[], value: Json | undefined): Json {
  if (path.length === 0) return value === undefined ? null : value;
  const [head, ...rest] = path;
  if (Array.isArray(v)) {
    const copy = [...v];
    if (rest.length === 0 && value === undefined) copy.splice(head as number, 1);
    else copy[head as number] = setAt(copy[head as number]!, rest, value);
    return copy;
  }
  const obj = { ...(v as Record<string, Json>) };
  if (rest.length === 0 && value === undefined) delete obj[head as string];
  else obj[head as string] = setAt(obj[head as string]!, rest, value);
  return obj;
}

/** One to three structural changes: a value replaced by an odd one, a key dropped, an unknown key added. */
export function breakStructure(r: Random, value: Json): Json {
  let v = value;
  const changes = 1 + r.int(3);
  for (let i = 0; i < changes; i++) {
    const all = paths(v);
    const path = r.pick(all);
    const what = r.int(3);
    if (what === 0 || path.length === 0) v = setAt(v, path, r.pick(ODD_VALUES) as Json);
    else if (what === 1) v = setAt(v, path, undefined);
    else
      v = setAt(
        v,
        [...path.slice(0, -1), r.pick(['unknownKey', 'extra', 'devices', 'match', 'type'])],
        r.pick(ODD_VALUES) as Json,
      );
  }
  return v;
}

/** Text damage: cut short, a line dropped, bytes flipped, a character inserted. */
export function breakText(r: Random, text: string): string {
  switch (r.int(5)) {
    case 0:
      return text.slice(0, r.int(text.length));
    case 1: {
      const lines = text.split('\n');
      lines.splice(r.int(lines.length), 1 + r.int(3));
      return lines.join('\n');
    }
    case 2: {
      const at = r.int(text.length);
      return (
        text.slice(0, at) +
        r.pick(['\t', '"', "'", '<', '>', '&', '{', '[', ':', '\u0000', '\uFFFD', '\n  ']) +
        text.slice(at)
      );
    }
    case 3: {
      const chars = [...text];
      for (let i = 0; i < 1 + r.int(8); i++) chars[r.int(chars.length)] = String.fromCharCode(32 + r.int(95));
      return chars.join('');
    }
    default:
      return r.pick([
        '',
        '\n',
        '\u0000\u0001',
        'null',
        '[]',
        '{}',
        '--- !!binary',
        'x'.repeat(5000),
        '\uFEFF',
      ]);
  }
}

export function breakYaml(r: Random, yaml: string): string {
  if (r.chance(0.35)) return breakText(r, yaml);
  return yamlDump(breakStructure(r, yamlLoad(yaml) as Json), { lineWidth: -1 });
}

export type { Json };
