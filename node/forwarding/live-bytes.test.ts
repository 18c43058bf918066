import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { LiveBytes } from './live-bytes.js';

describe('LiveBytes', () => {
  it("counts open bridges' streams and each of their queues once, until they close", () => {
    const live = new LiveBytes();
    const x = { buffered: 1000 }; // X's send queue, shared by both bridges
    const y1 = { buffered: 10 };
    const y2 = { buffered: 20 };
    const b1 = { held: 100, buffered: () => b1.held };
    const b2 = { held: 200, buffered: () => b2.held };
    assert.equal(live.total(), 0);
    const close1 = live.add(b1, [y1, x]);
    const close2 = live.add(b2, [y2, x, undefined]);
    assert.equal(live.total(), 100 + 200 + 10 + 20 + 1000, 'X queue counted once');
    b1.held = 5; // read at each total, not at add
    x.buffered = 7;
    assert.equal(live.total(), 5 + 200 + 10 + 20 + 7);
    close1();
    close1(); // idempotent: does not take X's queue away from b2
    assert.equal(live.total(), 200 + 20 + 7, "b2 still counts X's queue");
    assert.equal(live.bridges, 1);
    close2();
    assert.equal(live.total(), 0);
    assert.equal(live.bridges, 0);
  });
});
