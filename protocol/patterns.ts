/* eslint-disable no-control-regex -- these patterns exist to refuse control characters */

/**
 * The patterns and bounds of protocol/primitives.ts's field schemas, without zod: the relay's
 * plain checks (protocol/check.ts) use them too, so each pattern is written once.
 */

/** Largest value of a Postgres `integer` column. */
export const INT32_MAX = 2_147_483_647;

/**
 * Text without C0 control characters, DEL or lone UTF-16 surrogates: Postgres `text` cannot
 * hold NUL, and no field of this API needs a control character. Written without the `u` flag so
 * a lone surrogate (which `u` would match as a code point) is refused.
 */
export const SAFE_TEXT_RE = /^(?:[^\u0000-\u001f\u007f\ud800-\udfff]|[\ud800-\udbff][\udc00-\udfff])*$/;

/**
 * A host name (letters, digits, `-`, `_`, dots) or an IP literal (IPv6 without brackets), as a
 * relay dials it.
 */
export const HOST_RE = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/;

/**
 * An RFC 3339 instant (years 1970 to 9999, so it fits a Postgres `timestamptz` and a JavaScript
 * Date), with a zone. The year is checked in UTC too (instantMs): `9999-12-31T23:00:00-02:00` is
 * in the year 10000, which a Date turns into `+010000-...`, a string Postgres cannot read.
 */
export const INSTANT_RE =
  /^(?:19[7-9]\d|[2-9]\d{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;
/** The longest instant text read. */
export const INSTANT_MAX_CHARS = 40;
/** The first instant of the year 10000 (UTC), in milliseconds: every instant must come before it. */
const YEAR_10000 = Date.UTC(10000, 0, 1);

/** An instant (INSTANT_RE, before the year 10000 in UTC) in ms since the epoch; undefined for anything else. */
export function instantMs(s: unknown): number | undefined {
  if (typeof s !== 'string' || s.length > INSTANT_MAX_CHARS || !INSTANT_RE.test(s)) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) || t >= YEAR_10000 ? undefined : t;
}
