/**
 * Text that someone else chose (a device's client name, a relay's version, remote addresses and
 * event reasons), made safe to show beside the page's own words. The API refuses C0 controls in
 * such fields but takes any other character, among them the invisible ones that change how the
 * text around them is drawn: bidirectional overrides, embeddings and isolates (U+202E turns the
 * rest of its paragraph around, so a client name could garble the approval page's "not verified"
 * warning, or a relay's reason show another event's address backwards), zero-width characters,
 * C1 controls and line separators. Each such code unit is shown as a JSON escape (`\u202e`), so
 * what was sent stays readable, nothing hidden moves anything, and a JSON text stays valid JSON
 * with the same value.
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

export function shownText(s: string): string {
  return s.replace(INVISIBLE, (ch) => {
    let out = '';
    for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
}
