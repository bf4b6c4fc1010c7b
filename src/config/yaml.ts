import { FAILSAFE_SCHEMA, load, Type, types, YAMLException } from 'js-yaml';

// YAML through js-yaml: a third of the start-up cost of the yaml package for the same config
// (about 3 ms against 10 ms from V8's code cache), and every VM event reads the config.

// Two things js-yaml 4 has that its type definitions do not declare.
declare module 'js-yaml' {
  /** The built-in types. */
  export const types: Record<'null' | 'bool' | 'int' | 'float', Type>;
  interface Type {
    readonly tag: string;
  }
}

/** A number as YAML read it, with the characters the user wrote. */
class Written {
  constructor(
    readonly source: string,
    readonly value: number,
  ) {}

  /** As a mapping key, a number is the text written (`0300:` stays "0300"). */
  toString(): string {
    return this.source;
  }
}

const keepingSource = (type: Type) =>
  new Type(type.tag, {
    kind: 'scalar',
    resolve: (data: string) => type.resolve(data),
    construct: (data: string) => new Written(data, type.construct(data) as number),
  });

// YAML 1.2's core schema (null, booleans, numbers), with numbers kept as written until we know
// which key they belong to.
const SCHEMA = FAILSAFE_SCHEMA.extend({
  implicit: [types.null, types.bool, keepingSource(types.int), keepingSource(types.float)],
});

export type YamlResult = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * Parses one YAML document. A number is a number, except under the keys of `asWritten`: there it
 * is the text the user wrote. YAML 1.2 reads unquoted `0300` as 300 and `0x10de` as 4318, and
 * `class: 0300` must mean what it says. Duplicate keys are an error.
 */
export function readYaml(text: string, asWritten: ReadonlySet<string>): YamlResult {
  let raw: unknown;
  try {
    raw = load(text, { schema: SCHEMA });
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    const at = err.mark ? `line ${err.mark.line + 1}, column ${err.mark.column + 1}: ` : '';
    return { ok: false, error: `${at}${err.reason}` };
  }
  const budget = { left: MAX_NODES };
  const value = settle(raw, undefined, asWritten, budget);
  if (budget.left < 0)
    return {
      ok: false,
      error: `more than ${MAX_NODES} values once aliases are expanded (an alias bomb?): write the config without nested aliases`,
    };
  return { ok: true, value };
}

/**
 * js-yaml shares an aliased node rather than copying it, so `load` is quick even for a "billion
 * laughs" document; expanding it here (and validating it) would not be. A real config has a few
 * hundred values: stop counting far above that.
 */
export const MAX_NODES = 20_000;

function settle(
  value: unknown,
  key: string | undefined,
  asWritten: ReadonlySet<string>,
  budget: { left: number },
): unknown {
  if (--budget.left < 0) return null;
  if (value instanceof Written) return key !== undefined && asWritten.has(key) ? value.source : value.value;
  if (Array.isArray(value)) return value.map((v) => settle(v, undefined, asWritten, budget));
  if (value !== null && typeof value === 'object') {
    // fromEntries defines properties: a key "__proto__" stays a key.
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, settle(v, k, asWritten, budget)]));
  }
  return value;
}
