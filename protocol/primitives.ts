/* eslint-disable no-control-regex -- these patterns exist to refuse control characters */
import { z } from 'zod';
import { HOST_RE, INSTANT_MAX_CHARS, INSTANT_RE, instantMs, INT32_MAX, SAFE_TEXT_RE } from './patterns.js';

export { HOST_RE, INT32_MAX, SAFE_TEXT_RE } from './patterns.js';

/**
 * The building blocks of every request field (issue 9, finding 6): what a client sends must fit
 * what the database and the logs can hold, so nothing the edge accepted can fail further in.
 * Request schemas use only these (or enums, literals and patterns at least as strict); a test
 * walks the OpenAPI document and fails on a string or integer that escaped them.
 */

const SAFE_TEXT_MESSAGE = 'must not contain control characters';

/** Free text of at most `max` characters (names shown to people, versions, reasons). */
export const text = (max: number, min = 0) => z.string().min(min).max(max).regex(SAFE_TEXT_RE, SAFE_TEXT_MESSAGE);

/** An opaque bearer secret or code as this API issues them: visible ASCII only. */
export const opaqueToken = (max = 256) =>
  z.string().min(1).max(max).regex(/^[\x21-\x7e]+$/, 'must be visible ASCII (an opaque token)');

/** A password: any text without NUL (it is hashed, never stored or logged as is). */
export const password = (min = 1, max = 1024) =>
  z.string().min(min).max(max).regex(/^[^\u0000]*$/, 'must not contain NUL');

/**
 * A password being set (first admin, new user): as `password`, and well-formed UTF-16 besides. A
 * lone surrogate (`"\ud800"` in JSON) is hashed as its UTF-8 encoding, U+FFFD, so what was stored
 * would be another password than the one typed, which also any other lone surrogate there opens.
 * A login takes what `password` takes, so one set before this check still logs in.
 */
export const newPassword = (min: number, max = 1024) =>
  z
    .string()
    .min(min)
    .max(max)
    .regex(/^(?:[^\u0000\ud800-\udfff]|[\ud800-\udbff][\udc00-\udfff])*$/, 'must not contain NUL or a lone UTF-16 surrogate');

/** A count or size that is stored in an `integer` column. */
export const int32 = (min = 0) => z.number().int().min(min).max(INT32_MAX);

/** A byte count or other non-negative integer kept in JSON only (exact in a double). */
export const safeCount = () => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** An RFC 3339 instant a client reports (patterns.ts's instantMs: 1970 to 9999, with a zone). */
export const instant = () =>
  z
    .string()
    .max(INSTANT_MAX_CHARS)
    .regex(INSTANT_RE, 'must be an RFC 3339 timestamp between 1970 and 9999, e.g. 2026-01-01T00:00:00Z')
    .refine((s) => instantMs(s) !== undefined, 'must be a valid date before the year 10000 (UTC)');

/** A host name or an IP literal (IPv6 without brackets), as a relay dials it (patterns.ts's HOST_RE). */
export const HostSchema = z.string().min(1).max(253).regex(HOST_RE, 'must be a host name or an IP address');
