import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../shared/clock.js';
import { LeaseRegistry, MAX_LEASES_PER_CONNECTION, REVOCABLE_AFTER_EXPIRY_MS, type LeaseEndReason } from './lease-registry.js';

/** A connection that `closed` records the close of; `closing`: it was already closing for another reason. */
function holder(id: string, closed: Map<string, LeaseEndReason>, o: { closing?: boolean } = {}) {
  return { sessionId: id, close: (r: LeaseEndReason) => (closed.set(id, r), !o.closing) };
}

describe('LeaseRegistry', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const at = (s: number) => new Date(t0.getTime() + s * 1000);

  it('closes a connection when its lease expires, not before', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(10) });
    clock.set(at(9));
    assert.equal(reg.sweep(), 0);
    clock.set(at(10));
    assert.equal(reg.sweep(), 1);
    assert.equal(closed.get('s1'), 'lease_expired');
    assert.equal(reg.size, 0);
    reg.close();
  });

  it('a renewal extends the deadline; revoking either lease still closes', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(10) });
    assert.deepEqual(reg.renew('s1', { leaseId: 'l2', deadline: at(100) }), { ok: true });
    assert.deepEqual(reg.deadlineOf('s1'), at(100));
    clock.set(at(50));
    assert.equal(reg.sweep(), 0);
    assert.equal(reg.revoke('l1'), 1);
    assert.equal(closed.get('s1'), 'lease_revoked');
    assert.deepEqual(reg.renew('s1', { leaseId: 'l3', deadline: at(200) }), { ok: false, reason: 'not_registered' }, 'a closed connection cannot renew');
    reg.close();
  });

  it('a shorter renewal does not shorten the deadline', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    reg.attach(holder('s1', new Map()), { leaseId: 'l1', deadline: at(100) });
    reg.renew('s1', { leaseId: 'l2', deadline: at(20) });
    assert.deepEqual(reg.deadlineOf('s1'), at(100));
    reg.close();
  });

  it('limits connections per lease and frees the slot on detach', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 2 });
    const closed = new Map<string, LeaseEndReason>();
    assert.deepEqual(reg.attach(holder('a', closed), { leaseId: 'l', deadline: at(10) }), { ok: true });
    assert.deepEqual(reg.attach(holder('b', closed), { leaseId: 'l', deadline: at(10) }), { ok: true });
    assert.deepEqual(reg.attach(holder('c', closed), { leaseId: 'l', deadline: at(10) }), { ok: false, reason: 'too_many_connections' });
    reg.detach('a');
    assert.deepEqual(reg.attach(holder('c', closed), { leaseId: 'l', deadline: at(10) }), { ok: true });
    reg.close();
  });

  it('a renewal into a lease other connections hold counts against the same limit (h-front)', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 2 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('a', closed), { leaseId: 'shared', deadline: at(10) });
    reg.attach(holder('b', closed), { leaseId: 'shared', deadline: at(10) });
    reg.attach(holder('c', closed), { leaseId: 'own', deadline: at(10) });
    // c renews into `shared`, which already has its two: refused, and c keeps its own deadline.
    assert.deepEqual(reg.renew('c', { leaseId: 'shared', deadline: at(100) }), { ok: false, reason: 'too_many_connections' });
    assert.deepEqual(reg.deadlineOf('c'), at(10));
    assert.equal(reg.revoke('shared'), 2, 'c is not among the holders of shared');
    // a connection renewing into a lease it already holds is not counted twice.
    reg.attach(holder('d', closed), { leaseId: 'pair', deadline: at(10) });
    reg.attach(holder('e', closed), { leaseId: 'pair', deadline: at(10) });
    assert.deepEqual(reg.renew('d', { leaseId: 'pair', deadline: at(50) }), { ok: true });
    reg.close();
  });

  it('counts only the connections a revocation or an expiry began closing, not those already closing for another reason', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('open', closed), { leaseId: 'l', deadline: at(100) });
    reg.attach(holder('closing', closed, { closing: true }), { leaseId: 'l', deadline: at(100) });
    assert.equal(reg.revoke('l'), 1);
    assert.deepEqual([...closed.keys()].sort(), ['closing', 'open'], 'both were told');
    assert.equal(reg.size, 0, 'both let go');
    reg.attach(holder('due', closed), { leaseId: 'm', deadline: at(10) });
    reg.attach(holder('due-closing', closed, { closing: true }), { leaseId: 'n', deadline: at(10) });
    clock.set(at(10));
    assert.equal(reg.sweep(), 1);
    assert.equal(reg.size, 0);
    reg.close();
  });

  it('fires on its own timer at the deadline (real time)', async () => {
    const reg = new LeaseRegistry({ clock: { now: () => new Date() }, maxConnectionsPerLease: 1 });
    const keepAlive = setTimeout(() => {}, 5000); // the registry's own timer is unref'd
    const done = new Promise<LeaseEndReason>((resolve) => reg.attach({ sessionId: 's', close: (r) => (resolve(r), true) }, { leaseId: 'l', deadline: new Date(Date.now() + 50) }));
    assert.equal(await done, 'lease_expired');
    clearTimeout(keepAlive);
    reg.close();
  });

  it('a sooner deadline that arrives later moves the timer earlier; a detached nearest deadline does not stop the next one (real time)', async () => {
    const reg = new LeaseRegistry({ clock: { now: () => new Date() }, maxConnectionsPerLease: 1 });
    const keepAlive = setTimeout(() => {}, 5000);
    const ended: string[] = [];
    const ends = (id: string) => new Promise<void>((resolve) => reg.attach({ sessionId: id, close: (r) => (ended.push(`${id}:${r}`), resolve(), true) }, { leaseId: id, deadline: new Date(Date.now() + (id === 'late' ? 3_600_000 : 60)) }));
    void ends('late');
    await ends('soon');
    assert.deepEqual(ended, ['soon:lease_expired']);
    // The nearest deadline leaves (detached); the timer set for it finds nothing due and re-arms for the next.
    const gone = new Promise<void>((resolve) => reg.attach({ sessionId: 'gone', close: () => (resolve(), true) }, { leaseId: 'gone', deadline: new Date(Date.now() + 20) }));
    const next = new Promise<void>((resolve) => reg.attach({ sessionId: 'next', close: () => (resolve(), true) }, { leaseId: 'next', deadline: new Date(Date.now() + 80) }));
    reg.detach('gone');
    await next;
    assert.equal(await Promise.race([gone.then(() => 'closed'), Promise.resolve('open')]), 'open');
    assert.equal(reg.size, 1);
    clearTimeout(keepAlive);
    reg.close();
  });

  it('a connection renewed for days holds only the leases that can still be revoked; revoking one of them closes it', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    // 10-minute leases renewed at two thirds of their life, as the CLI does: about 216 a day.
    reg.attach(holder('s1', closed), { leaseId: 'l0', deadline: at(600) });
    let most = 0;
    for (let i = 1; i <= 1000; i++) {
      clock.set(at(i * 400));
      assert.deepEqual(reg.renew('s1', { leaseId: `l${i}`, deadline: at(i * 400 + 600) }), { ok: true });
      most = Math.max(most, reg.leaseIdsOf('s1').length);
    }
    assert.ok(most <= 3, `the connection held ${most} lease ids`);
    assert.deepEqual(reg.leaseIdsOf('s1').sort(), ['l1000', 'l999']);
    // The lease before the current one has not expired: revoking it closes the connection.
    assert.equal(reg.revoke('l999'), 1);
    assert.equal(closed.get('s1'), 'lease_revoked');
    reg.close();
  });

  it('keeps an expired lease revocable for REVOCABLE_AFTER_EXPIRY_MS (the control plane may run behind)', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(10) });
    clock.set(at(10 + REVOCABLE_AFTER_EXPIRY_MS / 1000 - 1));
    reg.renew('s1', { leaseId: 'l2', deadline: at(1000) });
    assert.deepEqual(reg.leaseIdsOf('s1').sort(), ['l1', 'l2']);
    clock.set(at(10 + REVOCABLE_AFTER_EXPIRY_MS / 1000));
    reg.renew('s1', { leaseId: 'l3', deadline: at(1000) });
    assert.deepEqual(reg.leaseIdsOf('s1').sort(), ['l2', 'l3']);
    assert.equal(reg.revoke('l1'), 0, 'no revocation names a lease long expired');
    assert.equal(reg.revoke('l2'), 1);
    reg.close();
  });

  it('refuses a renewal past MAX_LEASES_PER_CONNECTION revocable leases, and takes it again once some expired', () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 4 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l0', deadline: at(600) });
    for (let i = 1; i < MAX_LEASES_PER_CONNECTION; i++) assert.deepEqual(reg.renew('s1', { leaseId: `l${i}`, deadline: at(600 + i) }), { ok: true });
    assert.deepEqual(reg.renew('s1', { leaseId: 'one-too-many', deadline: at(5000) }), { ok: false, reason: 'too_many_leases' });
    assert.deepEqual(reg.deadlineOf('s1'), at(600 + MAX_LEASES_PER_CONNECTION - 1), 'a refused renewal does not extend the deadline');
    assert.deepEqual(reg.renew('s1', { leaseId: 'l3', deadline: at(700) }), { ok: true }, 'a lease it holds again is not one more');
    clock.set(at(600 + MAX_LEASES_PER_CONNECTION + REVOCABLE_AFTER_EXPIRY_MS / 1000));
    assert.deepEqual(reg.renew('s1', { leaseId: 'later', deadline: at(5000) }), { ok: true });
    assert.deepEqual(reg.leaseIdsOf('s1').sort(), ['l3', 'later']);
    assert.equal(reg.revoke('l3'), 1);
    reg.close();
  });

  it("a closed connection's left bridges are cut by a revocation of any lease it presented, until released; they hold no connection place", () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 1 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(100) });
    reg.renew('s1', { leaseId: 'l2', deadline: at(200) });
    let cuts = 0;
    const release = reg.holdLeft('s1', () => cuts++);
    reg.detach('s1');
    assert.deepEqual(reg.attach(holder('s2', closed), { leaseId: 'l1', deadline: at(100) }), { ok: true }, 'the closed connection counts against no limit');
    assert.equal(reg.revoke('l2'), 0);
    assert.equal(cuts, 1);
    assert.equal(reg.revoke('l1'), 1, 's2 closed');
    assert.equal(cuts, 1, 'held under each lease it presented, cut once');
    release();
    reg.attach(holder('s3', closed), { leaseId: 'l4', deadline: at(100) });
    const again = reg.holdLeft('s3', () => cuts++);
    again();
    reg.revoke('l4');
    assert.equal(cuts, 1, 'released: a later revocation does not run it');
    assert.doesNotThrow(() => reg.holdLeft('unknown', () => cuts++)());
    reg.close();
  });

  it("a closed connection's left bridges are cut when its deadline passes (its latest lease's expiry), once, unless released", () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 1 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(100) });
    reg.renew('s1', { leaseId: 'l2', deadline: at(200) });
    const cuts: string[] = [];
    reg.holdLeft('s1', (r) => cuts.push(r));
    reg.detach('s1');
    reg.attach(holder('s2', closed), { leaseId: 'l3', deadline: at(100) });
    reg.holdLeft('s2', (r) => cuts.push(`released:${r}`))();
    reg.detach('s2');
    clock.set(at(150));
    assert.equal(reg.sweep(), 0);
    assert.deepEqual(cuts, [], 'not at the first lease\'s expiry: the renewal holds until 200');
    clock.set(at(200));
    assert.equal(reg.sweep(), 0, 'no connection closed: the closed one holds no place');
    assert.deepEqual(cuts, ['lease_expired']);
    reg.revoke('l2');
    reg.sweep();
    assert.deepEqual(cuts, ['lease_expired'], 'dropped once cut');
    reg.close();
  });

  it("cuts left bridges on its own timer once no connection is attached (real time)", async () => {
    const reg = new LeaseRegistry({ clock: { now: () => new Date() }, maxConnectionsPerLease: 1 });
    const keepAlive = setTimeout(() => {}, 5000); // the registry's own timer is unref'd
    reg.attach({ sessionId: 's', close: () => true }, { leaseId: 'l', deadline: new Date(Date.now() + 50) });
    const cut = new Promise<string>((resolve) => reg.holdLeft('s', resolve));
    reg.detach('s'); // the last connection: the timer stays for the held bridges' deadline
    assert.equal(await cut, 'lease_expired');
    clearTimeout(keepAlive);
    reg.close();
  });

  it("close() cuts every closed connection's left bridges, once each", () => {
    const clock = new ManualClock(t0);
    const reg = new LeaseRegistry({ clock, maxConnectionsPerLease: 1 });
    const closed = new Map<string, LeaseEndReason>();
    reg.attach(holder('s1', closed), { leaseId: 'l1', deadline: at(100) });
    reg.renew('s1', { leaseId: 'l2', deadline: at(200) });
    let cuts = 0;
    const reasons: string[] = [];
    reg.holdLeft('s1', (r) => (cuts++, reasons.push(r)));
    reg.detach('s1');
    reg.close();
    assert.equal(cuts, 1);
    assert.deepEqual(reasons, ['shutdown']);
    reg.revoke('l1');
    assert.equal(cuts, 1, 'dropped: nothing runs it again');
  });

  it('a connection that closes with bridges left after close() has them cut at once, not held for good', () => {
    const reg = new LeaseRegistry({ clock: new ManualClock(t0), maxConnectionsPerLease: 1 });
    reg.attach(holder('s1', new Map()), { leaseId: 'l1', deadline: at(100) });
    reg.close();
    const reasons: string[] = [];
    const release = reg.holdLeft('s1', (r) => reasons.push(r));
    assert.deepEqual(reasons, ['shutdown']);
    release();
    reg.detach('s1');
    reg.revoke('l1');
    assert.deepEqual(reasons, ['shutdown'], 'once');
  });
});
