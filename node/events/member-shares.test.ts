import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemberShares } from './member-shares.js';

describe('MemberShares', () => {
  it('names the member holding the most, the first to hold that many on a tie, with its oldest item', () => {
    const s = new MemberShares<number>();
    assert.equal(s.largest(), undefined);
    s.add('a', 1);
    s.add('b', 2);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 1 });
    s.add('b', 3);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 2, held: 2 });
    s.add('a', 4);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 2, held: 2 }, 'b reached two first');
    s.removeOldest('b', 2);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 2 });
    s.removeOldest('a', 1);
    s.removeOldest('a', 4);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 3, held: 1 });
    s.removeOldest('b', 3);
    assert.equal(s.largest(), undefined);
  });

  it('agrees with a scan of every member through many adds and removals', () => {
    const s = new MemberShares<number>();
    const queue: { member: string; item: number }[] = [];
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let i = 0; i < 5000; i++) {
      const member = `m${rand(i % 500 < 250 ? 3 : 40)}`;
      queue.push({ member, item: i });
      s.add(member, i);
      if (queue.length > 100) {
        const counts = new Map<string, number>();
        for (const q of queue) counts.set(q.member, (counts.get(q.member) ?? 0) + 1);
        const most = Math.max(...counts.values());
        const got = s.largest()!;
        assert.equal(got.held, most);
        assert.equal(counts.get(got.member), most);
        const at = queue.findIndex((q) => q.member === got.member);
        assert.equal(got.oldest, queue[at]!.item);
        // Alternately the largest member's oldest (a drop) and the queue's front (a batch sent).
        const gone = i % 2 ? queue.splice(at, 1)[0]! : queue.shift()!;
        s.removeOldest(gone.member, gone.item);
      }
    }
  });

  it('removes an item that is not its member\'s oldest too, and ignores one it does not hold', () => {
    const s = new MemberShares<number>();
    s.add('a', 1);
    s.add('a', 2);
    s.removeOldest('b', 1);
    s.removeOldest('a', 3);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 2 });
    s.removeOldest('a', 2);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 1 });
  });
});
