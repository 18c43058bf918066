import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FEED_PAGE_MAX_ENTRIES, FEED_PAGE_ROWS } from '../../protocol/node-api-check.js';
import { MAX_BUFFERED, RevocationHub } from './revocation-hub.js';
import { credentialNotice, readCredentialNotice } from './nodes.js';

const r = (id: string) => ({ lease_id: id, exp: 2_000_000_000 });

describe('RevocationHub', () => {
  it('hands a push to the waiting polls of that node only', async () => {
    const hub = new RevocationHub();
    const a = hub.waiter('node_a')!;
    const b = hub.waiter('node_b')!;
    const waiting = a.next(60_000);
    hub.publish('node_a', [r('l1'), r('l2')]);
    assert.deepEqual(await waiting, { kind: 'pushed', revocations: [r('l1'), r('l2')] });
    assert.deepEqual(await b.next(0), { kind: 'timeout' });
    a.close();
    b.close();
    assert.equal(hub.waiting, 0);
  });

  it('keeps what was pushed before next() was called (a push during the database read is not lost)', async () => {
    const hub = new RevocationHub();
    const w = hub.waiter('n')!;
    hub.publish('n', [r('early')]);
    assert.deepEqual(w.take(), [r('early')]);
    hub.publish('n', [r('later')]);
    assert.deepEqual(await w.next(60_000), { kind: 'pushed', revocations: [r('later')] });
    w.close();
  });

  it('a poke wakes the node\'s polls to read the database', async () => {
    const hub = new RevocationHub();
    const w = hub.waiter('n')!;
    const waiting = w.next(60_000);
    hub.poke(['other', 'n']);
    assert.deepEqual(await waiting, { kind: 'poke' });
    w.close();
  });

  it('times out with nothing', async () => {
    const hub = new RevocationHub();
    const w = hub.waiter('n')!;
    assert.deepEqual(await w.next(5), { kind: 'timeout' });
    w.close();
  });

  it('bounds waiters per node and in all; closing frees the slot and ends a pending wait', async () => {
    const hub = new RevocationHub({ maxWaitersPerNode: 2, maxWaiters: 3 });
    const w1 = hub.waiter('n')!;
    const w2 = hub.waiter('n')!;
    assert.equal(hub.waiter('n'), undefined);
    const w3 = hub.waiter('m')!;
    assert.equal(hub.waiter('k'), undefined);
    const pending = w1.next(60_000);
    w1.close();
    assert.deepEqual(await pending, { kind: 'timeout' });
    assert.ok(hub.waiter('k'));
    w2.close();
    w3.close();
  });

  it('close() answers waiting polls at once and lets no new one wait (server shutdown)', async () => {
    const hub = new RevocationHub();
    const w = hub.waiter('n')!;
    const waiting = w.next(60_000);
    hub.close();
    assert.deepEqual(await waiting, { kind: 'timeout' });
    assert.equal(hub.waiter('n'), undefined);
    w.close();
  });

  it('bounds what one poll buffers: beyond it the poll reads the database instead', async () => {
    const hub = new RevocationHub({ maxBuffered: 2 });
    const w = hub.waiter('n')!;
    hub.publish('n', [r('a'), r('b')]);
    hub.publish('n', [r('c')]);
    assert.deepEqual(w.take(), [r('a'), r('b')]);
    assert.deepEqual(await w.next(60_000), { kind: 'poke' });
    w.close();
  });

  it('buffers at most what an answer may carry beside a database page, and refuses a maxBuffered above it', () => {
    const hub = new RevocationHub({ maxBuffered: MAX_BUFFERED });
    const w = hub.waiter('n')!;
    const many = Array.from({ length: MAX_BUFFERED + 1 }, (_, i) => r(`x${i}`));
    hub.publish('n', many.slice(0, MAX_BUFFERED));
    hub.publish('n', many.slice(MAX_BUFFERED));
    const taken = w.take();
    assert.equal(taken.length, MAX_BUFFERED);
    assert.ok(taken.length + FEED_PAGE_ROWS <= FEED_PAGE_MAX_ENTRIES, 'a held answer with a database page fits what a relay accepts');
    w.close();
    for (const bad of [MAX_BUFFERED + 1, 1_000_000, -1, 1.5, Number.NaN]) {
      assert.throws(() => new RevocationHub({ maxBuffered: bad }), RangeError, String(bad));
    }
  });

  it('evict: polls held with a replaced credential end at once with nothing, the current one keeps waiting', async () => {
    const hub = new RevocationHub();
    const old = hub.waiter('n', 'hash-old')!;
    const current = hub.waiter('n', 'hash-new')!;
    const other = hub.waiter('m', 'hash-m')!;
    const held = hub.waiter('n', 'hash-old')!;
    const waiting = held.next(60_000);
    hub.publish('n', [r('before')]);
    assert.deepEqual(await waiting, { kind: 'pushed', revocations: [r('before')] });
    const waitingAgain = held.next(60_000);
    hub.evict('n', 'hash-new');
    assert.deepEqual(await waitingAgain, { kind: 'evicted' }, 'a held poll is woken');
    held.close();
    assert.deepEqual(await old.next(60_000), { kind: 'evicted' });
    assert.equal(old.evicted, true);
    assert.deepEqual(old.take(), [], 'what was pushed before goes too');
    hub.publish('n', [r('after')]);
    assert.deepEqual(old.take(), []);
    assert.equal(current.evicted, false);
    assert.deepEqual(await current.next(60_000), { kind: 'pushed', revocations: [r('before'), r('after')] });
    assert.equal(other.evicted, false);
    for (const w of [old, current, other]) w.close();
    assert.equal(hub.waiting, 0);
  });

  it('the credential notice other replicas hear round-trips, and is never read from a list of node ids', () => {
    assert.deepEqual(readCredentialNotice(credentialNotice('nod_abc', 'f00d')), { nodeId: 'nod_abc', hash: 'f00d' });
    for (const p of ['nod_a,nod_b', '*', 'nod_a', '!nod_a', '!nod_a:', '!a:b:c', '!a,b:c']) assert.equal(readCredentialNotice(p), undefined, p);
  });
});
