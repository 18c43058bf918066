import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DatabaseOutages, MAX_CREDIT_MS, MAX_OUTAGES, OUTAGE_MERGE_MS } from './database-outages.js';
import { HEARTBEAT_RETRY_MAX_MS } from '../../node/heartbeat-retry.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
/** Seconds after T0 of the oldest last heartbeat still online at `now` (window 30 s). */
const since = (o: DatabaseOutages, now: number) => (o.onlineSince(at(now), 30).getTime() - T0) / 1000;
/** An outage seen through failures every second from `from` to `to`. */
function outage(o: DatabaseOutages, from: number, to: number) {
  for (let s = from; s <= to; s++) o.noteUnreachable(at(s));
}

describe('DatabaseOutages', () => {
  it('no outage: the plain window', () => {
    assert.equal(since(new DatabaseOutages(), 100), 70);
  });

  it('an outage inside the window is not counted: the window reaches back that much further', () => {
    const o = new DatabaseOutages();
    outage(o, 80, 95);
    assert.equal(o.count, 1);
    assert.equal(since(o, 100), 55); // 5 s after it, 15 s in it, 25 s before it
    // Once the window of reachable time has passed after it, the outage no longer matters.
    assert.equal(since(o, 125), 95);
    assert.equal(since(o, 200), 170);
  });

  it('going on now: the time since it began is not counted', () => {
    const o = new DatabaseOutages();
    outage(o, 80, 100);
    assert.equal(since(o, 100), 50);
  });

  it('failures more than OUTAGE_MERGE_MS apart are separate outages; the quiet time between them counts', () => {
    const o = new DatabaseOutages();
    const gap = OUTAGE_MERGE_MS / 1000 + 1;
    outage(o, 60, 65);
    outage(o, 65 + gap, 80);
    assert.equal(o.count, 2);
    // 20 s since the second, the gap, then 30 - 20 - gap before the first.
    assert.equal(since(o, 100), 60 - (30 - 20 - gap));
  });

  it("a relay's refused heartbeat retries alone keep an outage one", () => {
    assert.ok(HEARTBEAT_RETRY_MAX_MS < OUTAGE_MERGE_MS);
  });

  it('a lone failure is an outage of no length', () => {
    const o = new DatabaseOutages();
    o.noteUnreachable(at(90));
    assert.equal(since(o, 100), 70);
  });

  it('stretches the window by at most MAX_CREDIT_MS of outages: a database failing on and off for an hour does not keep a gone relay online', () => {
    const o = new DatabaseOutages();
    const credit = MAX_CREDIT_MS / 1000;
    outage(o, 1000, 4600); // an hour of failures a second apart: one outage
    assert.equal(since(o, 4600), 4600 - credit - 30);
    assert.equal(since(o, 4610), 4610 - 10 - credit - 20, '10 s after it: those count, then the credit, then the rest of the window');
    // Outages apart share the one credit.
    const p = new DatabaseOutages();
    const gap = OUTAGE_MERGE_MS / 1000 + 1;
    outage(p, 1000, 1000 + credit - 100);
    outage(p, 1000 + credit - 100 + gap, 1000 + credit - 100 + gap + 200);
    const now = 1000 + credit - 100 + gap + 200;
    // All 200 s of the newer, 100 s of the older (the credit used up), then the window: the gap counts.
    assert.equal(since(p, now), now - 200 - gap - 100 - (30 - gap));
  });

  it('keeps MAX_OUTAGES, the newest', () => {
    const o = new DatabaseOutages();
    const step = OUTAGE_MERGE_MS / 1000 + 10;
    for (let i = 0; i < MAX_OUTAGES + 5; i++) outage(o, i * step, i * step + 2);
    assert.equal(o.count, MAX_OUTAGES);
  });
});
