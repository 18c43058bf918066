import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChannelSlots, OpenRefusedError } from './channel-slots.js';

describe('ChannelSlots', () => {
  it("Y's side: pending opens count against the channels, and each limit refuses with its reason", () => {
    const s = new ChannelSlots({ channelsPerConnection: 3, channelsPerOpener: 3, pendingOpens: 2 });
    s.beginOpen();
    s.beginOpen();
    assert.deepEqual(s.refuseOpen(), { reason: 'too_many_pending_opens', limit: 2 });
    s.endOpen();
    s.opened();
    assert.equal(s.refuseOpen(), undefined);
    s.beginOpen();
    assert.deepEqual(s.refuseOpen(), { reason: 'too_many_pending_opens', limit: 2 });
    s.endOpen();
    s.opened();
    assert.deepEqual(s.refuseOpen(), { reason: 'too_many_channels', limit: 3 });
    assert.equal(s.open, 2);
    s.closed();
    assert.equal(s.refuseOpen(), undefined);
  });

  it("X's side: an opener's share is held from the reservation until its release; a full connection refuses everyone", () => {
    const s = new ChannelSlots({ channelsPerConnection: 3, channelsPerOpener: 2, pendingOpens: 8 });
    const a1 = s.reserve('alice');
    s.reserve('alice');
    assert.throws(() => s.reserve('alice'), (e: unknown) => e instanceof OpenRefusedError && e.reason === 'opener_share' && e.limit === 2);
    a1();
    s.reserve('alice');
    s.opened();
    s.opened();
    s.opened();
    assert.throws(() => s.reserve('bob'), (e: unknown) => e instanceof OpenRefusedError && e.reason === 'exposure_full' && e.limit === 3);
  });
});
