/**
 * LeaseSupervisor#next's list of waiters (at most MAX_WAITING): a waiter whose signal aborts (in
 * `tunnel open --listen`, its local client went away) leaves the list at once, so the places of
 * clients that went away do not keep others out. No connection is ever made here: next() waits
 * for one that does not come.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Session } from '../session.js';
import { CliError } from '../errors.js';
import { LeaseSupervisor, MAX_WAITING, presented } from './lease-session.js';

const supervisor = () => new LeaseSupervisor({} as Session, { request: { kind: 'open', exposure: 'x' } });

/** What a promise has come to by the next turn of the event loop (a refusal at the limit is already there). */
async function settledByNextTurn(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  const turn = new Promise<'pending'>((r) => setImmediate(() => r('pending')));
  return Promise.race([p.then(() => 'resolved' as const, () => 'rejected' as const), turn]);
}

describe('LeaseSupervisor#next: waiters that give up', () => {
  it(`${MAX_WAITING} waiters whose signals abort leave the list at once: the next caller waits, it is not refused`, async () => {
    const sup = supervisor();
    const gone = new Error('gone');
    const controllers = Array.from({ length: MAX_WAITING }, () => new AbortController());
    const waits = controllers.map((ac) => sup.next(60_000, ac.signal));
    assert.equal(sup.waiting, MAX_WAITING);
    // Full: one more is refused at once.
    await assert.rejects(sup.next(60_000), (err: unknown) => err instanceof CliError && /already wait/.test(err.message));

    for (const ac of controllers) ac.abort(gone);
    const outcomes = await Promise.allSettled(waits);
    assert.ok(
      outcomes.every((o) => o.status === 'rejected' && o.reason === gone),
      'each rejects with its signal reason',
    );
    assert.equal(sup.waiting, 0);

    const next = sup.next(60_000);
    assert.equal(await settledByNextTurn(next), 'pending');
    assert.equal(sup.waiting, 1);
    sup.stop();
    await assert.rejects(next, /no connection to the relay/);
    assert.equal(sup.waiting, 0);
  });

  it('a signal already aborted is refused at once, without taking a place', async () => {
    const sup = supervisor();
    const ac = new AbortController();
    const gone = new Error('gone');
    ac.abort(gone);
    await assert.rejects(sup.next(60_000, ac.signal), (err: unknown) => err === gone);
    assert.equal(sup.waiting, 0);
    sup.stop();
  });

  it('a waiter that timed out or was released leaves no abort listener behind', async () => {
    const sup = supervisor();
    const ac = new AbortController();
    let added = 0;
    let removed = 0;
    const add = ac.signal.addEventListener.bind(ac.signal);
    const remove = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((...a: Parameters<typeof add>) => (added++, add(...a))) as typeof add;
    ac.signal.removeEventListener = ((...a: Parameters<typeof remove>) => (removed++, remove(...a))) as typeof remove;
    await assert.rejects(sup.next(1, ac.signal), /no connection to the relay/);
    const released = sup.next(60_000, ac.signal);
    sup.stop();
    await assert.rejects(released, /no connection to the relay/);
    assert.deepEqual({ added, removed }, { added: 2, removed: 2 });
    assert.equal(sup.waiting, 0);
  });
});

describe('presented: the leases a connection keeps to revoke when it ends', () => {
  it('keeps the newest 8 however many renewals a connection lives through', () => {
    let ids: string[] | undefined;
    for (let i = 0; i < 10_000; i++) ids = presented(ids, `lse_${i}`);
    assert.deepEqual(ids, Array.from({ length: 8 }, (_, i) => `lse_${9992 + i}`));
    assert.deepEqual(presented(undefined, 'lse_a'), ['lse_a']);
  });
});
