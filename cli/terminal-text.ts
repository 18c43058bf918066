import { loggable } from '../shared/logger.js';

/**
 * What must not reach a terminal as it is, in text a control plane or relay chose: control
 * characters other than line feed and tab (C0, DEL, and C1, where 0x9b is a CSI on its own), and
 * the Unicode format characters that reorder or hide text: the bidirectional marks, embeddings,
 * overrides and isolates (U+061C, U+200E-200F, U+202A-202E, U+2066-2069), which make a line read
 * otherwise than its characters run ("Trojan Source"), and the invisible zero-width space, word
 * joiner and byte order mark (U+200B, U+2060, U+FEFF). The zero-width joiner and non-joiner, which
 * scripts and emoji need, stay.
 */
// eslint-disable-next-line no-control-regex -- the control characters are what is matched
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;
/** UNSAFE, line feed and tab. */
// eslint-disable-next-line no-control-regex -- the control characters are what is matched
const UNSAFE_ON_ONE_LINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;

/**
 * `text` with every character UNSAFE names written as `\uXXXX`: what a command prints may quote
 * what a control plane or relay chose (a relay's version, a scope, a device login's URL), and an
 * escape sequence in it would reach the user's terminal (retitle the window, write the clipboard
 * with OSC 52, erase lines). In --json output, where JSON.stringify leaves DEL, C1 and the format
 * characters as they are, the same escape keeps the string's value.
 */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Text a peer chose (a relay's refusal or DISCONNECT description: any bytes, up to a packet) for
 * a terminal line: what UNSAFE names, line breaks and tabs as '?', at most `max` characters.
 */
export function peerText(text: string, max = 256): string {
  return loggable(text.replace(UNSAFE_ON_ONE_LINE, '?'), max);
}
