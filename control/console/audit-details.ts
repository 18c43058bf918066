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
 * (shown-text.ts), at most `max` characters with the `…` a cut one ends with. A longer text is
 * cut between whole units (`UNIT`): cut at a fixed length after escaping, `\u202e` became `\u20`,
 * another and invalid text, and a character outside the BMP a lone half, drawn as U+FFFD. The
 * cut is made before the HTML escaping (hono's JSX does that to the whole), so no entity is split
 * either.
 */
export function shownDetails(data: unknown, max = DETAILS_MAX): { text: string; cut: boolean } {
  const full = shownText(JSON.stringify(data) ?? 'null');
  if (full.length <= max) return { text: full, cut: false };
  UNIT.lastIndex = 0;
  let end = 0;
  for (let m = UNIT.exec(full); m && UNIT.lastIndex <= max - 1; m = UNIT.exec(full)) end = UNIT.lastIndex;
  return { text: full.slice(0, end), cut: true };
}

/** A JSON string (key or value) in the shown details, closed or (cut) not. */
const JSON_STRING = /"(?:[^"\\]|\\.)*(?:"|$)/g;

/**
 * The shown details in pieces: the JSON's own punctuation, numbers and literals as they are, and
 * each of its strings (what relays, members and devices chose: reasons, addresses, names) on its
 * own, to be isolated, so that right-to-left letters in one cannot move the text around it.
 */
export function detailsPieces(shown: string): { text: string; string: boolean }[] {
  const out: { text: string; string: boolean }[] = [];
  let at = 0;
  for (const m of shown.matchAll(JSON_STRING)) {
    if (m.index > at) out.push({ text: shown.slice(at, m.index), string: false });
    out.push({ text: m[0], string: true });
    at = m.index + m[0].length;
  }
  if (at < shown.length) out.push({ text: shown.slice(at), string: false });
  return out;
}
