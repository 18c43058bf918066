/**
 * Plain checks of JSON values, for the relay (issue 11, idle relay RSS): zod costs an idle relay
 * about 4 MB (its module sources, compiled code and the 68 locale files zod 4 always loads), so
 * tunnel-node reads what it reads through these instead. Each relay-side check mirrors a zod
 * schema of protocol/ that stays the definition the control plane documents and validates with
 * (lease-claims-check.ts, jwks-check.ts, node-api-check.ts, problem.ts); protocol/relay-checks.test
 * runs both on the same valid, mutated, hostile and random inputs and fails when they disagree
 * on acceptance or on the value read.
 *
 * The semantics are zod 4's for the parts used: a string's length counts UTF-16 code units; a
 * number is finite, and an integer is a safe integer; an object is any non-null, non-array
 * object, read into a fresh object with only its known keys (a strict object refuses unknown
 * keys instead); an optional key that is absent stays absent; arrays are read into fresh arrays.
 */

/** What a check returns for a value it refuses (undefined can be a value read). */
export const BAD: unique symbol = Symbol('bad');
export type Bad = typeof BAD;
export type Check<T> = (v: unknown) => T | Bad;

export function str(o: { min?: number; max?: number; re?: RegExp } = {}): Check<string> {
  return (v) => {
    if (typeof v !== 'string') return BAD;
    if (o.min !== undefined && v.length < o.min) return BAD;
    if (o.max !== undefined && v.length > o.max) return BAD;
    if (o.re !== undefined && !o.re.test(v)) return BAD;
    return v;
  };
}

export function num(o: { int?: boolean; min?: number; max?: number } = {}): Check<number> {
  return (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return BAD;
    if (o.int && !Number.isSafeInteger(v)) return BAD;
    if (o.min !== undefined && v < o.min) return BAD;
    if (o.max !== undefined && v > o.max) return BAD;
    return v;
  };
}

export const bool: Check<boolean> = (v) => (typeof v === 'boolean' ? v : BAD);

/** One of the given strings (zod's literal and enum). */
export function oneOf<const T extends string>(values: readonly T[]): Check<T> {
  return (v) => (values.includes(v as T) ? (v as T) : BAD);
}

export function arr<T>(item: Check<T>, o: { min?: number; max?: number } = {}): Check<T[]> {
  return (v) => {
    if (!Array.isArray(v)) return BAD;
    if (o.min !== undefined && v.length < o.min) return BAD;
    if (o.max !== undefined && v.length > o.max) return BAD;
    const out: T[] = [];
    for (const x of v) {
      const r = item(x);
      if (r === BAD) return BAD;
      out.push(r);
    }
    return out;
  };
}

const OPTIONAL = Symbol('optional');
type Optional<T> = Check<T> & { [OPTIONAL]: true };

/** A key of an object that may be absent. */
export function opt<T>(c: Check<T>): Optional<T | undefined> {
  const o = ((v: unknown) => (v === undefined ? undefined : c(v))) as Optional<T | undefined>;
  o[OPTIONAL] = true;
  return o;
}

type Shape = Record<string, Check<unknown>>;
type Read<S extends Shape> = { [K in keyof S]: S[K] extends Check<infer T> ? T : never };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** An object with these keys; `strict` refuses any other key, else other keys are dropped. */
export function obj<S extends Shape>(shape: S, o: { strict?: boolean } = {}): Check<Read<S>> {
  const keys = Object.keys(shape);
  return (v) => {
    if (!isObject(v)) return BAD;
    if (o.strict && Object.keys(v).some((k) => !own(shape, k))) return BAD;
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      const c = shape[k]!;
      const present = own(v, k);
      if (!present && OPTIONAL in c) continue;
      const r = c(present ? v[k] : undefined);
      if (r === BAD) return BAD;
      out[k] = r;
    }
    return out as Read<S>;
  };
}

/** One of several object checks, chosen by the string at `key` (zod's discriminatedUnion). */
export function byKey<T>(key: string, options: { [k: string]: Check<T> }): Check<T> {
  return (v) => {
    if (!isObject(v)) return BAD;
    const k = v[key];
    if (typeof k !== 'string' || !own(options, k)) return BAD;
    return options[k]!(v);
  };
}

/** The value read, or undefined when the check refused it. */
export function read<T>(c: Check<T>, v: unknown): { ok: true; value: T } | { ok: false } {
  const r = c(v);
  return r === BAD ? { ok: false } : { ok: true, value: r };
}
