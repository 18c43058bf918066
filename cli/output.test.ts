import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { repeatsQuieted } from './output.js';

describe('repeatsQuieted: reconnect lines', () => {
  it('prints the first of a kind, the same kind again only after the interval, another kind at once, and anything after reset()', () => {
    let t = 0;
    const q = repeatsQuieted(60_000, () => t);
    const offline = (s: number) => `"x" is not online: its relay r1 has not reported for ${s} s; reconnecting`;
    assert.equal(q.print(offline(31)), true);
    t += 1000;
    assert.equal(q.print(offline(32)), false, 'the same kind, numbers aside');
    t += 58_000;
    assert.equal(q.print(offline(90)), false);
    t += 1000;
    assert.equal(q.print(offline(91)), true, 'a minute after the last one printed');
    t += 1000;
    assert.equal(q.print('cannot reach the control plane at https://c:8443; reconnecting'), true, 'another kind');
    assert.equal(q.print(offline(92)), true, 'and back');
    q.reset();
    assert.equal(q.print(offline(93)), true, 'after a connection');
  });
});
