import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLOCK_SKEW_BOUND_MS, CLOCK_SKEW_HYSTERESIS_MS, ClockSkewWatch, estimateClockOffset } from './clock-offset.js';
import { CERT_BACKDATE_SECONDS } from '../protocol/lease-claims-check.js';
import { createMemoryLogger } from '../shared/logger.js';

const T0 = Date.parse('2026-12-06T09:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const WARNED = /clock is off from the control plane/;
const AGREES = /clock agrees with the control plane/;

/** A watch and its log; `answer(offsetMs, rttMs)` notes one heartbeat sent at T0 answered after `rttMs`. */
function watch() {
  const logger = createMemoryLogger();
  const w = new ClockSkewWatch(logger);
  const answer = (offsetMs: number, rttMs = 0) => w.note(iso(T0 + rttMs / 2 + offsetMs), T0, T0 + rttMs);
  const said = (re: RegExp) => logger.lines.filter((l) => re.test(l.msg));
  return { w, logger, answer, said };
}

describe('estimateClockOffset', () => {
  it('the server time against the midpoint of sending and answer, give or take half the round trip', () => {
    assert.deepEqual(estimateClockOffset(T0, T0 + 200, T0 + 100 + 3_600_000), { offsetMs: 3_600_000, uncertaintyMs: 100 });
    assert.deepEqual(estimateClockOffset(T0, T0, T0 - 45_000), { offsetMs: -45_000, uncertaintyMs: 0 });
  });
  it('none when the answer came before the request left (this clock set back meanwhile) or a time is not finite', () => {
    assert.equal(estimateClockOffset(T0, T0 - 1, T0), undefined);
    for (const [s, r, srv] of [[NaN, T0, T0], [T0, Infinity, T0], [T0, T0, NaN]] as const) assert.equal(estimateClockOffset(s, r, srv), undefined);
  });
});

describe('ClockSkewWatch', () => {
  it('its bound is half the tolerance a lease start is given', () => {
    assert.equal(CLOCK_SKEW_BOUND_MS * 2, CERT_BACKDATE_SECONDS * 1000);
  });

  it('nothing known before the first answer', () => {
    assert.deepEqual(watch().w.status(), { clock_offset_ms: null, clock_skewed: false });
    assert.equal(watch().w.offsetMs, undefined);
  });

  it('warns once per episode, names the offset, and says when the clock agrees again', () => {
    const { w, answer, said, logger } = watch();
    answer(1200, 40);
    assert.deepEqual(w.status(), { clock_offset_ms: 1200, clock_skewed: false });
    assert.equal(logger.lines.length, 0);
    for (let i = 0; i < 5; i++) answer(-3_600_000 + i, 40);
    assert.equal(said(WARNED).length, 1, 'one warning for the episode, not one per heartbeat');
    assert.deepEqual(said(WARNED)[0]!.fields, { offsetMs: -3_600_000, uncertaintyMs: 20, boundMs: CLOCK_SKEW_BOUND_MS, thisClock: 'ahead' });
    assert.equal(said(WARNED)[0]!.level, 'warn');
    assert.match(said(WARNED)[0]!.msg, /NTP/);
    assert.deepEqual(w.status(), { clock_offset_ms: -3_599_996, clock_skewed: true });
    answer(500, 40);
    assert.equal(said(AGREES).length, 1);
    assert.equal(said(AGREES)[0]!.level, 'info');
    assert.deepEqual(w.status(), { clock_offset_ms: 500, clock_skewed: false });
    answer(90_000, 40);
    assert.equal(said(WARNED).length, 2, 'a new episode is said again');
    assert.equal(said(WARNED)[1]!.fields.thisClock, 'behind');
  });

  it('past the bound only for certain: the offset less half the round trip', () => {
    const { w, answer, said } = watch();
    answer(CLOCK_SKEW_BOUND_MS + 1000, 4000);
    assert.equal(w.status().clock_skewed, false, '31 s give or take 2 s may be 29');
    answer(CLOCK_SKEW_BOUND_MS, 0);
    assert.equal(w.status().clock_skewed, false, 'at the bound is within it');
    answer(CLOCK_SKEW_BOUND_MS + 1000, 1000);
    assert.equal(w.status().clock_skewed, true);
    assert.equal(said(WARNED).length, 1);
  });

  it('back only once under the bound for certain, by a margin: a clock at the bound is not reported at every heartbeat', () => {
    const { w, answer, said } = watch();
    answer(CLOCK_SKEW_BOUND_MS + 1, 0);
    answer(CLOCK_SKEW_BOUND_MS - 1, 0);
    answer(CLOCK_SKEW_BOUND_MS + 1, 0);
    answer(CLOCK_SKEW_BOUND_MS - CLOCK_SKEW_HYSTERESIS_MS, 2000);
    assert.equal(w.status().clock_skewed, true, 'under the margin give or take 1 s is not for certain');
    assert.deepEqual([said(WARNED).length, said(AGREES).length], [1, 0]);
    answer(CLOCK_SKEW_BOUND_MS - CLOCK_SKEW_HYSTERESIS_MS, 0);
    assert.equal(w.status().clock_skewed, false);
    assert.deepEqual([said(WARNED).length, said(AGREES).length], [1, 1]);
  });

  it('a server_time that cannot be read is said once and changes nothing; a clock set back mid-request is no estimate', () => {
    const { w, answer, said, logger } = watch();
    answer(-90_000);
    const before = w.status();
    const unreadable = [
      'yesterday',
      '',
      '2026-13-01T00:00:00Z',
      '9999-12-31T23:00:00-02:00', // the year 10000 in UTC
      '2026-12-06T09:00:00', // no zone
      `2026-12-06T09:00:00.${'0'.repeat(100)}Z`,
      12345,
      null,
      undefined,
      { toString: () => iso(T0) },
    ];
    for (const v of unreadable) w.note(v, T0, T0);
    assert.deepEqual(w.status(), before);
    assert.equal(logger.lines.filter((l) => /server_time is not a readable time/.test(l.msg)).length, 1);
    w.note(iso(T0), T0, T0 - 5000);
    assert.deepEqual(w.status(), before, 'the answer before the request: not an estimate');
    answer(0);
    w.note('nonsense', T0, T0);
    assert.equal(logger.lines.filter((l) => /server_time is not a readable time/.test(l.msg)).length, 2, 'said again after a readable one');
    assert.equal(said(AGREES).length, 1);
  });

  it('a clock decades off (no real-time clock, booted at 1970) is an offset like any other', () => {
    const { w } = watch();
    w.note(iso(T0), 0, 0);
    assert.deepEqual(w.status(), { clock_offset_ms: T0, clock_skewed: true });
  });
});
