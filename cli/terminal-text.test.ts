import assert from 'node:assert/strict';
import { it } from 'node:test';
import { peerText, terminalText } from './terminal-text.js';

it('terminalText writes controls and the characters that reorder or hide text as \\uXXXX, keeping line feeds, tabs, joiners and other text', () => {
  assert.equal(terminalText('a\u001b[2Jb'), 'a\\u001b[2Jb');
  assert.equal(terminalText('invoice\u202eexe.pdf'), 'invoice\\u202eexe.pdf');
  for (const c of ['\u061c', '\u200b', '\u200e', '\u200f', '\u202a', '\u2060', '\u2066', '\u2069', '\ufeff', '\u009b']) {
    assert.equal(terminalText(`x${c}y`), `x\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}y`, JSON.stringify(c));
  }
  const kept = 'line\n\tindented: caf\u00e9 \u{1F469}\u200d\u{1F4BB} \u0645\u200c\u0646';
  assert.equal(terminalText(kept), kept);
  // --json: the escaped text is still JSON for the same value.
  const value = 'scope\u202e\u0007';
  assert.equal(JSON.parse(terminalText(JSON.stringify(value))), value);
});

it('peerText puts the same characters, line breaks and tabs as ? on one line, cut short', () => {
  assert.equal(peerText('a\u202eb\nc\td\u001b'), 'a?b?c?d?');
  assert.ok(peerText('x'.repeat(1000), 50).length < 80);
});
