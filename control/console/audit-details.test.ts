import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DETAILS_MAX, shownDetails } from './audit-details.js';

describe('audit details: cut at whole characters and escapes', () => {
  it('shows short data whole, as JSON with invisible characters escaped', () => {
    assert.equal(shownDetails({ reason: 'a\u202eb' }), '{"reason":"a\\u202eb"}');
    assert.equal(JSON.parse(shownDetails({ reason: 'a\u202eb' })).reason, 'a\u202eb');
  });

  it('never splits an escape, a surrogate pair or a pair of surrogate escapes, wherever the cut falls', () => {
    const hard = ['\u202e', '"', '\\', '\n', '😀', '\u{e0001}', '<', '&'];
    for (const ch of hard) {
      for (let pad = 0; pad < 14; pad++) {
        const data = { reason: 'x'.repeat(280 + pad) + ch.repeat(40) };
        const shown = shownDetails(data);
        assert.ok(shown.length <= DETAILS_MAX, `${shown.length}`);
        assert.ok(shown.endsWith('…'));
        const body = shown.slice(0, -1);
        // What is shown is a prefix of the whole, ending where a unit ends: closing the string
        // and the object makes valid JSON whose value is a prefix of the original.
        const value = JSON.parse(`${body}"}`).reason as string;
        assert.ok(data.reason.startsWith(value), JSON.stringify({ ch, pad, tail: body.slice(-14) }));
        assert.ok(DETAILS_MAX - shown.length < 12, 'nothing more than one unit is dropped');
      }
    }
  });
});
