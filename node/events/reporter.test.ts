import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_BATCH_MAX_BYTES, type ConnectionEvent } from '../../protocol/api-types.js';
import { ControlError } from '../control-client.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { EventReporter } from './reporter.js';

const ev = (i: number): ConnectionEvent => ({ type: 'conn_open', at: new Date(0).toISOString(), session_id: `ses_${i}`, lease_id: `lease_${'x'.repeat(100)}_${i}`, remote: '203.0.113.9:50000' });
const rejected = (status: number) => new ControlError('CONTROL_REJECTED', `control plane answered ${status}`, { status, retryable: status >= 500 });

/** A control plane that answers each batch with `answer(events)` (undefined: accepted). */
function fakeClient(answer: (events: ConnectionEvent[]) => ControlError | undefined) {
  const accepted: ConnectionEvent[] = [];
  const bodies: number[] = [];
  return {
    accepted,
    bodies,
    sendEvents: async (events: ConnectionEvent[]) => {
      bodies.push(Buffer.byteLength(JSON.stringify({ events })));
      const err = answer(events);
      if (err) throw err;
      accepted.push(...events);
    },
  };
}

describe('EventReporter', () => {
  it('sends batches that fit the byte budget, in order', async () => {
    const c = fakeClient(() => undefined);
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 10_000, intervalMs: 1000 });
    for (let i = 0; i < 900; i++) r.push(ev(i));
    await r.flush();
    assert.deepEqual(c.accepted.map((e) => e.session_id), Array.from({ length: 900 }, (_, i) => `ses_${i}`));
    assert.ok(c.bodies.length > 1 && c.bodies.every((b) => b <= EVENT_BATCH_MAX_BYTES), c.bodies.join(','));
    assert.equal(r.sent, 900);
    assert.equal(r.queued, 0);
  });

  it('halves its batches on 413 and delivers everything', async () => {
    const c = fakeClient((events) => (Buffer.byteLength(JSON.stringify({ events })) > 5000 ? rejected(413) : undefined));
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 10_000, intervalMs: 1000 });
    for (let i = 0; i < 300; i++) r.push(ev(i));
    await r.flush();
    assert.equal(c.accepted.length, 300);
    assert.equal(r.dropped, 0);
    assert.ok(r.batchBytes <= 5000);
  });

  it('drops a batch control refuses for good, counts it, logs once, and goes on', async () => {
    let refuse = 2;
    const c = fakeClient(() => (refuse-- > 0 ? rejected(400) : undefined));
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 4096 });
    for (let i = 0; i < 100; i++) r.push(ev(i));
    await r.flush();
    assert.ok(r.droppedBy('refused') > 0);
    assert.equal(c.accepted.length + r.droppedBy('refused'), 100);
    assert.equal(r.queued, 0);
    assert.equal(logger.lines.filter((l) => l.msg === 'connection events dropped').length, 1);
  });

  it('keeps events across 5xx, 401 and unreachable, and drops the oldest past the bound', async () => {
    const errors: Error[] = [rejected(503), rejected(401), new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true })];
    const c = fakeClient(() => errors.shift() as ControlError | undefined);
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 50, intervalMs: 1000 });
    for (let i = 0; i < 60; i++) r.push(ev(i));
    assert.equal(r.droppedBy('queue_full'), 10);
    for (let k = 0; k < 3; k++) {
      await r.flush();
      assert.equal(r.queued, 50);
    }
    await r.flush();
    assert.deepEqual(c.accepted.map((e) => e.session_id), Array.from({ length: 50 }, (_, i) => `ses_${i + 10}`));
  });
});
