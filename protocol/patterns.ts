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
