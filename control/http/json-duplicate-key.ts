/**
 * The first member name that appears twice in one object of a JSON text, or undefined. RFC 8259
 * leaves duplicate names to the reader (JSON.parse keeps the last), I-JSON (RFC 7493 §2.3) forbids
 * them: a proxy or WAF in front that keeps the first would judge another body than the one this
 * server acts on. Names compare as decoded strings (`"a"` and `"\u0061"` are one name).
 *
 * `text` must already have parsed as JSON: this only walks its strings and brackets. Time and
 * memory are linear in the text, which the body limit bounds.
 */
export function duplicateJsonKey(text: string): string | undefined {
  // One entry per open bracket: the names seen in an object, null for an array.
  const open: (Set<string> | null)[] = [];
  let keyNext = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      let end = i + 1;
      let escaped = false;
      for (; end < text.length; end++) {
        const cj = text.charCodeAt(end);
        if (cj === BACKSLASH) {
          escaped = true;
          end++;
        } else if (cj === QUOTE) break;
      }
      if (keyNext) {
        const raw = text.slice(i, end + 1);
        const name = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        const names = open[open.length - 1]!;
        if (names.has(name)) return name;
        names.add(name);
        keyNext = false;
      }
      i = end;
    } else if (ch === OPEN_BRACE) {
      open.push(new Set());
      keyNext = true;
    } else if (ch === OPEN_BRACKET) {
      open.push(null);
      keyNext = false;
    } else if (ch === CLOSE_BRACE || ch === CLOSE_BRACKET) {
      open.pop();
      keyNext = false;
    } else if (ch === COMMA) {
      keyNext = open[open.length - 1] instanceof Set;
    }
  }
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
