import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CHANNEL_REFUSALS, formatRefusal, parseRefusal, refusalWord } from './channel-refusals.js';

describe('channel refusals ("word: text" in CHANNEL_OPEN_FAILURE)', () => {
  it('maps relay reasons to words and parses them back', () => {
    assert.equal(formatRefusal('exposure_offline', 'hostx-ssh:22 is not online on this relay'), 'exposure_offline: hostx-ssh:22 is not online on this relay');
    assert.equal(refusalWord('open_failed'), 'service_unreachable');
    assert.equal(refusalWord('too_many_channels'), 'busy');
    assert.equal(refusalWord('egress_connect_failed'), 'egress_failed');
    assert.equal(refusalWord('wrong_lease_kind'), 'not_in_lease');
    assert.equal(refusalWord('anything new'), 'not_in_lease');
    for (const kind of CHANNEL_REFUSALS) assert.deepEqual(parseRefusal(formatRefusal(kind, 'a: b')), { kind, detail: 'a: b' });
  });

  it('bounds the description and ignores words it does not know', () => {
    assert.equal(formatRefusal('no_such_port', 'x'.repeat(1000)).length, 256);
    assert.equal(parseRefusal('connect failed'), undefined);
    assert.equal(parseRefusal('toString: x'), undefined);
    assert.equal(parseRefusal(''), undefined);
    assert.equal(parseRefusal(undefined), undefined);
  });
});
