import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sourceKey, Startups } from './startups.js';

describe('Startups (MaxStartups, PerSourceMaxStartups)', () => {
  it('drops at full, per source, and releases once', () => {
    const s = new Startups({ start: 3, rate: 100, full: 3, perSource: 2 });
    const a = s.admit('10.0.0.1');
    const b = s.admit('10.0.0.1');
    assert.ok(a.ok && b.ok);
    assert.deepEqual(s.admit('10.0.0.1'), { ok: false, reason: 'per_source' });
    assert.ok(s.admit('10.0.0.2').ok);
    assert.deepEqual(s.admit('10.0.0.3'), { ok: false, reason: 'max_startups' });
    a.release();
    a.release();
    assert.equal(s.count, 2);
    assert.ok(s.admit('10.0.0.1').ok);
  });

  it('drops at random from start, rate% rising linearly to 100% at full (OpenSSH drop_connection)', () => {
    let r = 0;
    const s = new Startups({ start: 2, rate: 30, full: 12, perSource: 100 }, () => r);
    for (let i = 0; i < 2; i++) assert.ok(s.admit(`10.0.0.${i}`).ok);
    // At start (2): p = 30%.
    r = 0.29;
    assert.deepEqual(s.admit('10.1.0.1'), { ok: false, reason: 'max_startups_random' });
    r = 0.3;
    assert.ok(s.admit('10.1.0.1').ok);
    // At 7 of 2..12: p = 30 + 70 * 5/10 = 65%.
    r = 0.999;
    for (let i = 0; i < 4; i++) assert.ok(s.admit(`10.2.0.${i}`).ok);
    assert.equal(s.count, 7);
    r = 0.64;
    assert.equal(s.admit('10.3.0.1').ok, false);
    r = 0.65;
    assert.equal(s.admit('10.3.0.1').ok, true);
  });

  it('counts an IPv6 /64 as one source and an IPv4-mapped address as IPv4', () => {
    assert.equal(sourceKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(sourceKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('2001:0DB8:0001:0002:ffff::1'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
    assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    const s = new Startups({ start: 10, rate: 30, full: 10, perSource: 1 });
    assert.ok(s.admit('2001:db8:1:2::1').ok);
    assert.deepEqual(s.admit('2001:db8:1:2::2'), { ok: false, reason: 'per_source' });
    assert.ok(s.admit('2001:db8:1:3::1').ok);
  });
});
