import { parseHostPort, type HostPort } from '../../protocol/host-port.js';
import { ConfigError } from './config-error.js';

/**
 * Parsers for the kinds of value a flag takes (host:port, duration, count, size, one of a set),
 * each made for one flag so that its ConfigError names it. Plain functions, not zod: an idle
 * relay does not load zod (issue 11, idle relay RSS).
 */

/** Ends the parse: throws a ConfigError carrying `message`. */
export const fail = (message: string): never => {
  throw new ConfigError(message);
};
/** The raw value when given; `message` when not. */
export const given = (s: string | undefined, message: string): string => s ?? fail(message);
/** A string option that, when given, must not be empty (zod's default message, as before). */
export const nonEmpty = (s: string | undefined): string | undefined => (s === '' ? fail('Too small: expected string to have >=1 characters') : s);

/** host:port for --NAME (host may be empty, port may be 0). */
export const hostPort =
  (name: string) =>
  (s: string | undefined): HostPort => {
    // An empty host (`:2222`) listens on every IPv4 address; port 0 takes any free port.
    const hp = s === undefined ? undefined : parseHostPort(s, { defaultHost: '0.0.0.0', allowZero: true });
    if (!hp || !s!.includes(':')) return fail(`--${name} must be host:port, e.g. 127.0.0.1:2222`);
    return hp;
  };

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Milliseconds, or NaN when `s` is not a duration. */
export const millis = (s: string): number => {
  const m = DURATION_RE.exec(s.trim());
  return m ? Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's') as keyof typeof DURATION_UNITS]) : NaN;
};

/** A duration for --NAME in milliseconds (a bare number is seconds). */
export const duration =
  (name: string) =>
  (s: string | undefined): number => {
    const ms = s === undefined ? NaN : millis(s);
    return Number.isNaN(ms) ? fail(`--${name} must be a duration such as 500ms, 5s, 2m`) : ms;
  };

/**
 * A duration for --NAME of at least `minMs`: a loop's interval. At 0 the relay's heartbeat, event
 * batches and revocation polls went one after another without pause, and a control plane that
 * failed them fast (503) was asked again in a tight loop by every relay (the retries are drawn
 * between half and all of the interval).
 */
export const interval =
  (name: string, minMs: number) =>
  (s: string | undefined): number => {
    const ms = duration(name)(s);
    return ms >= minMs ? ms : fail(`--${name} must be at least ${minMs}ms`);
  };

/** An integer of at least `min` for --NAME. */
export const count =
  (name: string, min: number) =>
  (s: string | undefined): number => {
    const n = Number(s);
    if (s === undefined || !Number.isInteger(n) || n < min) return fail(`--${name} must be an integer >= ${min}`);
    return n;
  };

/** Bytes (B, KiB, MiB or GiB; bare: bytes), at least `min`, for --NAME. */
export const size =
  (name: string, min: number) =>
  (s: string | undefined): number => {
    const m = s === undefined ? null : /^(\d+)(B|KiB|MiB|GiB)?$/.exec(s.trim());
    const n = m ? Number(m[1]) * { B: 1, KiB: 1024, MiB: 1 << 20, GiB: 1 << 30 }[(m[2] ?? 'B') as 'B' | 'KiB' | 'MiB' | 'GiB'] : NaN;
    if (!Number.isSafeInteger(n) || n < min) return fail(`--${name} must be a size of at least ${min} bytes, such as 4MiB or 512KiB`);
    return n;
  };

/** One of `values`; `message` otherwise. */
export const oneOf =
  <T extends string>(values: readonly T[], message: string) =>
  (s: string | undefined): T =>
    values.includes(s as T) ? (s as T) : fail(message);
