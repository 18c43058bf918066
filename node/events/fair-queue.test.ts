import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FairQueueModel, seededRandom } from '../testing/fair-queue-model.js';
import { FairQueue } from './fair-queue.js';

describe('FairQueue', () => {
  it('names the member holding the most, the first to hold that many on a tie, with its oldest item', () => {
    const s = new FairQueue<number>();
    assert.equal(s.largest(), undefined);
    assert.equal(s.dropFromLargest(), undefined);
    assert.equal(s.shift(), undefined);
    s.push('a', 1);
    s.push('b', 2);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 1 });
    s.push('b', 3);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 2, held: 2 });
    s.push('a', 4);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 2, held: 2 }, 'b reached two first');
    assert.deepEqual(s.dropFromLargest(), { member: 'b', item: 2, held: 2 });
    assert.deepEqual([...s], [1, 3, 4]);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 1, held: 2 });
    assert.equal(s.shift(), 1);
    assert.equal(s.peek(), 3);
    assert.deepEqual(s.largest(), { member: 'b', oldest: 3, held: 1 }, 'b came down to one before a did');
    assert.equal(s.shift(), 3);
    assert.deepEqual(s.largest(), { member: 'a', oldest: 4, held: 1 });
    assert.deepEqual(s.dropFromLargest(), { member: 'a', item: 4, held: 1 });
    assert.equal(s.size, 0);
    assert.deepEqual([...s], []);
    assert.equal(s.largest(), undefined);
    s.push('c', 5);
    assert.deepEqual([...s], [5], 'usable again once empty');
  });

  it('agrees with a reference model (an array, scanned) through many random pushes, drops, batches and reads', () => {
    for (const seed of [1, 2, 3, 4]) {
      const rand = seededRandom(seed);
      const q = new FairQueue<number>();
      const model = new FairQueueModel<number>();
      let next = 0;
      for (let op = 0; op < 20_000; op++) {
        // Phases: a few members, then many, then one flooding among others; the queue grows and shrinks.
        const phase = Math.floor(op / 2500) % 4;
        const members = phase === 0 ? 3 : phase === 1 ? 60 : 12;
        const roll = rand(100);
        const at = `seed ${seed} op ${op}`;
        if (roll < (model.items.length > 400 ? 40 : 60)) {
          const member = phase === 2 && rand(2) === 0 ? 'flood' : `m${rand(members)}`;
          q.push(member, next);
          model.push(member, next++);
        } else if (roll < 80) {
          assert.deepEqual(q.dropFromLargest(), model.dropFromLargest(), at);
        } else if (roll < 95) {
          // A batch from the front, as EventReporter takes one: read, then taken.
          const n = 1 + rand(20);
          assert.deepEqual([...q].slice(0, n), model.items.slice(0, n).map((m) => m.item), at);
          for (let i = 0; i < n; i++) {
            assert.equal(q.peek(), model.items[0]?.item, at);
            assert.equal(q.shift(), model.shift(), at);
          }
        } else {
          assert.deepEqual(q.largest(), model.largest(), at);
        }
        assert.equal(q.size, model.items.length, at);
        if (op % 97 === 0) assert.deepEqual([...q], model.items.map((m) => m.item), at);
      }
    }
  });

  it('keeps each member\'s items in queue order when they leave from the middle', () => {
    const q = new FairQueue<string>();
    for (const [m, i] of [['a', 'a1'], ['b', 'b1'], ['a', 'a2'], ['b', 'b2'], ['a', 'a3'], ['c', 'c1']] as const) q.push(m, i);
    assert.equal(q.dropFromLargest()?.item, 'a1');
    assert.equal(q.dropFromLargest()?.item, 'b1', 'b reached two before a came down to it');
    assert.equal(q.dropFromLargest()?.item, 'a2');
    assert.deepEqual([...q], ['b2', 'a3', 'c1']);
    assert.equal(q.shift(), 'b2');
    assert.deepEqual([...q], ['a3', 'c1']);
    q.push('b', 'b3');
    assert.deepEqual([...q], ['a3', 'c1', 'b3']);
  });
});
