import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DETAILS_MAX, detailsPieces, shownDetails } from './audit-details.js';

describe('audit details: cut at whole characters and escapes', () => {
  it('shows short data whole, as JSON with invisible characters escaped', () => {
    assert.deepEqual(shownDetails({ reason: 'a\u202eb' }), { text: '{"reason":"a\\u202eb"}', cut: false });
    assert.equal(JSON.parse(shownDetails({ reason: 'a\u202eb' }).text).reason, 'a\u202eb');
  });

  it('never splits an escape, a surrogate pair or a pair of surrogate escapes, wherever the cut falls', () => {
    const hard = ['\u202e', '"', '\\', '\n', '😀', '\u{e0001}', '<', '&'];
    for (const ch of hard) {
      for (let pad = 0; pad < 14; pad++) {
        const data = { reason: 'x'.repeat(280 + pad) + ch.repeat(40) };
        const { text: body, cut } = shownDetails(data);
        assert.ok(cut);
        const shown = `${body}…`;
        assert.ok(shown.length <= DETAILS_MAX, `${shown.length}`);
        // What is shown is a prefix of the whole, ending where a unit ends: closing the string
        // and the object makes valid JSON whose value is a prefix of the original.
        const value = JSON.parse(`${body}"}`).reason as string;
        assert.ok(data.reason.startsWith(value), JSON.stringify({ ch, pad, tail: body.slice(-14) }));
        assert.ok(DETAILS_MAX - shown.length < 12, 'nothing more than one unit is dropped');
      }
    }
  });

  it('splits the shown JSON into its strings and the rest, a cut string included', () => {
    const { text } = shownDetails({ reason: 'שלום "x"', n: 3, remote: '10.0.0.1:22' });
    assert.deepEqual(detailsPieces(text), [
      { text: '{', string: false },
      { text: '"reason"', string: true },
      { text: ':', string: false },
      { text: '"שלום \\"x\\""', string: true },
      { text: ',', string: false },
      { text: '"n"', string: true },
      { text: ':3,', string: false },
      { text: '"remote"', string: true },
      { text: ':', string: false },
      { text: '"10.0.0.1:22"', string: true },
      { text: '}', string: false },
    ]);
    assert.deepEqual(detailsPieces('{"reason":"abc\\"'), [
      { text: '{', string: false },
      { text: '"reason"', string: true },
      { text: ':', string: false },
      { text: '"abc\\"', string: true },
    ]);
    // Cut inside a string: the rest is that string.
    assert.deepEqual(detailsPieces('{"n":1,"reason":"ab'), [
      { text: '{', string: false },
      { text: '"n"', string: true },
      { text: ':1,', string: false },
      { text: '"reason"', string: true },
      { text: ':', string: false },
      { text: '"ab', string: true },
    ]);
  });
});
