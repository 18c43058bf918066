import { shownText } from './shown-text.js';

/** The most of an audit event's data the audit page shows, in characters as shown (an escape counts as written). */
export const DETAILS_MAX = 300;

/**
 * One shown unit, never cut: an escape (a surrogate pair's two `\u` escapes together, any other
 * `\u` escape, `\"`, `\\`, `\n` ...), a character outside the BMP (both halves), or one code unit.
 */
const UNIT = /\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\[^u]|[\ud800-\udbff][\udc00-\udfff]|[^]/gy;

/**
 * An audit event's data as the audit page shows it: JSON, with invisible characters as escapes
 * (shown-text.ts), at most `max` characters. A longer text is cut between whole units (`UNIT`)
 * and ends with `…`: cut at a fixed length after escaping, `\u202e` became `\u20`, another and
 * invalid text, and a character outside the BMP a lone half, drawn as U+FFFD. The cut is made
 * before the HTML escaping (hono's JSX does that to the whole), so no entity is split either.
 */
export function shownDetails(data: unknown, max = DETAILS_MAX): string {
  const full = shownText(JSON.stringify(data) ?? 'null');
  if (full.length <= max) return full;
  UNIT.lastIndex = 0;
  let end = 0;
  for (let m = UNIT.exec(full); m && UNIT.lastIndex <= max - 1; m = UNIT.exec(full)) end = UNIT.lastIndex;
  return `${full.slice(0, end)}…`;
}
