import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_BATCH_MAX_BYTES, type ConnectionEvent } from '../../protocol/api-types.js';
import { ControlError, type EventBatchResult } from '../control-client.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { FairQueueModel, seededRandom } from '../testing/fair-queue-model.js';
import { EventReporter, MAX_HALVINGS } from './reporter.js';

const ev = (i: number): ConnectionEvent => ({ type: 'conn_open', at: new Date(0).toISOString(), session_id: `ses_${i}`, lease_id: `lease_${'x'.repeat(100)}_${i}`, remote: '203.0.113.9:50000' });
const rejected = (status: number) => new ControlError('CONTROL_REJECTED', `control plane answered ${status}`, { status, retryable: status >= 500 });

/**
 * A control plane that answers each batch with `answer(events)`: an error, the indexes of the
 * events it refuses one by one (recording the others), or undefined (all accepted).
 */
function fakeClient(answer: (events: ConnectionEvent[]) => ControlError | number[] | undefined) {
  const accepted: ConnectionEvent[] = [];
  const bodies: number[] = [];
  return {
    accepted,
    bodies,
    sendEvents: async (events: ConnectionEvent[]): Promise<EventBatchResult> => {
      bodies.push(Buffer.byteLength(JSON.stringify({ events })));
      const a = answer(events);
      if (a instanceof ControlError) throw a;
      const refused = new Set(a ?? []);
      accepted.push(...events.filter((_, i) => !refused.has(i)));
      return { accepted: events.length - refused.size, rejected: [...refused].map((index) => ({ index, code: 'VALIDATION_FAILED', field: 'reason' })) };
    },
  };
}
/** Like an older control plane: 400 for a whole batch with an event it refuses. */
const refusesWholeBatch = (bad: (e: ConnectionEvent) => boolean) => (events: ConnectionEvent[]) => (events.some(bad) ? rejected(400) : undefined);

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
    const c = fakeClient(() => (refuse-- > 0 ? rejected(422) : undefined));
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 4096 });
    for (let i = 0; i < 100; i++) r.push(ev(i));
    await r.flush();
    assert.ok(r.droppedBy('refused') > 0);
    assert.equal(c.accepted.length + r.droppedBy('refused'), 100);
    assert.equal(r.queued, 0);
    assert.equal(logger.lines.filter((l) => l.msg === 'connection events dropped').length, 1);
  });

  it('a batch refused with 400 for one event goes again in halves: only that event is lost', async () => {
    const bad = (e: ConnectionEvent) => e.session_id === 'ses_377';
    const c = fakeClient(refusesWholeBatch(bad));
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 1024 * 1024 });
    for (let i = 0; i < 1000; i++) r.push(ev(i));
    await r.flush();
    assert.deepEqual(c.accepted.map((e) => e.session_id), Array.from({ length: 1000 }, (_, i) => `ses_${i}`).filter((id) => id !== 'ses_377'));
    assert.equal(r.sent, 999);
    assert.equal(r.droppedBy('refused'), 1);
    assert.equal(r.queued, 0);
    // One batch of 1000 (a 1 MiB budget); halving it down to its bad event takes two requests
    // per halving, 10 halvings.
    assert.ok(c.bodies.length <= 1 + 2 * 10, `${c.bodies.length} requests`);
    assert.equal(logger.lines.filter((l) => l.msg.startsWith('control refused an event batch; sending it in halves')).length, 1);
    assert.equal(logger.lines.filter((l) => l.msg === 'connection events dropped').length, 1);

    // The next batches are whole again.
    const before = c.bodies.length;
    for (let i = 1000; i < 1100; i++) r.push(ev(i));
    await r.flush();
    assert.equal(c.bodies.length - before, 1);
  });

  it('a batch of events all refused with 400 ends, each dropped once', async () => {
    const c = fakeClient(refusesWholeBatch(() => true));
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 10_000, intervalMs: 1000 });
    for (let i = 0; i < 10; i++) r.push(ev(i));
    await r.flush();
    assert.equal(r.droppedBy('refused'), 10);
    assert.equal(r.queued, 0);
    assert.equal(c.bodies.length, 19, 'every halving of 10 events');
  });

  it('halving a refused batch is bounded: a control plane refusing most events costs a bounded number of requests per batch, every event accounted for', async () => {
    // Every 3rd event outside what control takes, or a proxy answering 400 to everything: two
    // requests per event before (1,672 and 1,996 for 1000 events).
    for (const bad of [(e: ConnectionEvent) => Number(e.session_id?.slice(4)) % 3 === 0, () => true]) {
      const c = fakeClient(refusesWholeBatch(bad));
      const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 1024 * 1024 });
      for (let i = 0; i < 1000; i++) r.push(ev(i));
      await r.flush();
      assert.ok(c.bodies.length <= 2 * MAX_HALVINGS + 1, `${c.bodies.length} requests`);
      assert.equal(r.queued, 0);
      assert.equal(c.accepted.length + r.droppedBy('refused'), 1000);
      assert.ok(c.accepted.every((e) => !bad(e)));
    }
  });

  it('counts the events control refuses one by one and sends the others once', async () => {
    const c = fakeClient((events) => events.flatMap((e, i) => (e.session_id === 'ses_5' || e.session_id === 'ses_50' ? [i] : [])));
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 10_000, intervalMs: 1000 });
    for (let i = 0; i < 100; i++) r.push(ev(i));
    await r.flush();
    assert.equal(c.bodies.length, 1, 'one request');
    assert.equal(c.accepted.length, 98);
    assert.equal(r.sent, 98);
    assert.equal(r.droppedBy('rejected'), 2);
    assert.equal(r.droppedBy('refused'), 0);
    const logged = logger.lines.filter((l) => l.msg === 'connection events dropped');
    assert.equal(logged.length, 1, 'logged once per code');
    assert.equal(logged[0]!.fields.reason, 'rejected');
    assert.equal(logged[0]!.fields.code, 'VALIDATION_FAILED');
    assert.equal(logged[0]!.fields.type, 'conn_open');
  });

  it('logs rejections once per known code: codes a control plane makes up are one more line, not one each', async () => {
    // A broken or hostile control plane naming every rejection differently (up to 64 characters
    // each) must not make a log line, and a remembered key, per event.
    let n = 0;
    const c = {
      sendEvents: async (events: ConnectionEvent[]): Promise<EventBatchResult> => ({
        accepted: 0,
        rejected: events.map((_, index) => ({ index, code: `MADE_UP_${n++}` })),
      }),
    };
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 1024 * 1024 });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1000; i++) r.push(ev(i));
      await r.flush();
    }
    assert.equal(r.droppedBy('rejected'), 3000);
    const logged = logger.lines.filter((l) => l.msg === 'connection events dropped');
    assert.equal(logged.length, 1, `${logged.length} lines`);
    assert.equal(logged[0]!.fields.code, 'MADE_UP_0');
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
  it('keeps events while control refuses the relay\'s API level (upgraded before control), and sends them once it serves it', async () => {
    let upgraded = false;
    const levelRefused = new ControlError('CONTROL_REJECTED', 'control plane answered 400', { status: 400, problemCode: 'API_LEVEL_UNSUPPORTED', retryable: true });
    const c = fakeClient(() => (upgraded ? undefined : levelRefused));
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 50, intervalMs: 1000 });
    for (let i = 0; i < 40; i++) r.push(ev(i));
    for (let k = 0; k < MAX_HALVINGS + 2; k++) await r.flush();
    assert.equal(r.queued, 40);
    assert.equal(r.droppedBy('refused'), 0);
    upgraded = true;
    await r.flush();
    assert.deepEqual(c.accepted.map((e) => e.session_id), Array.from({ length: 40 }, (_, i) => `ses_${i}`));
  });
  it('a member flooding the full queue pushes out its own events, not another member\'s: the other\'s all reach control', async () => {
    // X reconnects in a loop (about four events a connection) while control is unreachable; Y
    // connects a few times meanwhile. With the oldest event dropped whatever its member, Y's
    // were pushed out before they were sent.
    let down = true;
    const c = fakeClient(() => (down ? new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true }) : undefined));
    const logger = createMemoryLogger();
    const r = new EventReporter({ client: c, logger, maxQueue: 50, intervalMs: 1000 });
    const ys: string[] = [];
    for (let i = 0; i < 400; i++) {
      r.push(ev(i), 'usr_x');
      if (i % 100 === 0) {
        r.push(ev(10_000 + i), 'usr_y');
        ys.push(`ses_${10_000 + i}`);
      }
      if (i % 50 === 0) await r.flush(); // each attempt fails: everything stays queued
    }
    r.push(ev(20_000)); // an authentication failure: no member's
    assert.equal(r.queued, 50);
    assert.equal(r.droppedBy('queue_full'), 400 + ys.length + 1 - 50);
    down = false;
    await r.flush();
    assert.equal(r.queued, 0);
    const got = c.accepted.map((e) => e.session_id!);
    assert.deepEqual(got.filter((id) => ys.includes(id)), ys, 'every one of Y\'s events, in order');
    assert.ok(got.includes('ses_20000'));
    // X's newest events are what is left of its own.
    assert.deepEqual(got.filter((id) => Number(id.slice(4)) < 10_000), Array.from({ length: 50 - ys.length - 1 }, (_, i) => `ses_${400 - (50 - ys.length - 1) + i}`));
    const logged = logger.lines.filter((l) => l.msg === 'connection events dropped');
    assert.equal(logged.length, 1, 'logged once');
    assert.equal(logged[0]!.fields.member, 'usr_x');
  });

  it('agrees with a reference model through many random pushes and flushes to a control plane that comes and goes: each event sent once and in order, or dropped from the member holding the most', async () => {
    for (const seed of [11, 12, 13]) {
      const rand = seededRandom(seed);
      let down = false;
      const id = (e: ConnectionEvent) => Number(e.session_id!.slice(4));
      // Control refuses every 17th event alone (`rejected`) and records the others.
      const c = fakeClient((events) => (down ? new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true }) : events.flatMap((e, i) => (id(e) % 17 === 0 ? [i] : []))));
      const max = 20 + rand(80);
      const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: max, intervalMs: 1000 });
      const model = new FairQueueModel<number>();
      const delivered: number[] = [];
      let pushed = 0;
      let full = 0;
      let rejectedCount = 0;
      const deliver = () => {
        for (let i = model.shift(); i !== undefined; i = model.shift()) {
          if (i % 17 === 0) rejectedCount++;
          else delivered.push(i);
        }
      };
      for (let op = 0; op < 6000; op++) {
        const at = `seed ${seed} op ${op}`;
        const roll = rand(100);
        if (roll < 90) {
          // A flooder, a crowd of members, and events of no member.
          const k = rand(10);
          const member = k < 4 ? 'usr_flood' : k < 9 ? `usr_${rand(30)}` : '';
          r.push(ev(pushed), member);
          model.push(member, pushed++);
          if (model.items.length > max) {
            model.dropFromLargest();
            full++;
          }
        } else if (roll < 98) {
          await r.flush();
          if (!down) deliver();
        } else down = !down;
        assert.equal(r.queued, model.items.length, at);
        assert.equal(r.droppedBy('queue_full'), full, at);
        assert.equal(r.sent + r.dropped + r.queued, pushed, at);
      }
      down = false;
      await r.flush();
      deliver();
      assert.deepEqual(c.accepted.map(id), delivered, `seed ${seed}: what control recorded`);
      assert.equal(r.droppedBy('rejected'), rejectedCount);
      assert.equal(r.sent + r.dropped, pushed);
      assert.ok(full > 500, `seed ${seed}: the queue overflowed often (${full})`);
    }
  });

  it('events dropped from the batch under way leave the rest of the queue as it was', async () => {
    let answer: (() => void) | undefined;
    const c = fakeClient(() => undefined);
    const client = {
      sendEvents: async (events: ConnectionEvent[]) => {
        if (!answer) await new Promise<void>((resolve) => (answer = resolve));
        return c.sendEvents(events);
      },
    };
    const r = new EventReporter({ client, logger: createMemoryLogger(), maxQueue: 10, intervalMs: 1000 });
    r.push(ev(0), 'usr_y');
    for (let i = 1; i < 5; i++) r.push(ev(i), 'usr_x');
    const first = r.flush(); // the batch of all five is out
    while (!answer) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 5; i < 15; i++) r.push(ev(i), 'usr_x'); // X's five oldest dropped, four of them in the batch
    answer();
    await first; // the batch's one event left (Y's) removed from the queue, none of the nine behind it, which go next
    assert.equal(r.queued, 0);
    assert.deepEqual(c.accepted.map((e) => e.session_id), [0, 1, 2, 3, 4, ...Array.from({ length: 9 }, (_, i) => i + 6)].map((i) => `ses_${i}`));
    // The four taken out of the batch were delivered with it: sent, not dropped.
    assert.equal(r.droppedBy('queue_full'), 1);
    assert.equal(r.sent, 14);
  });

  it('events dropped from the batch under way count as dropped once, as sent when it is delivered and as queue_full when it is not: never both', async () => {
    const answers: (() => void)[] = [];
    let fail = true;
    const c = fakeClient(() => (fail ? rejected(503) : undefined));
    const client = {
      sendEvents: async (events: ConnectionEvent[]) => {
        await new Promise<void>((resolve) => answers.push(resolve));
        return c.sendEvents(events);
      },
    };
    const r = new EventReporter({ client, logger: createMemoryLogger(), maxQueue: 10, intervalMs: 1000 });
    for (let i = 0; i < 10; i++) r.push(ev(i), 'usr_x');
    let pushed = 10;
    const account = () => r.sent + r.dropped + r.queued;
    // A batch that fails (503): the three dropped from it meanwhile are lost, counted queue_full once.
    let flushing = r.flush();
    while (answers.length === 0) await new Promise((resolve) => setImmediate(resolve));
    for (; pushed < 13; pushed++) r.push(ev(pushed), 'usr_x');
    answers.shift()!();
    await flushing;
    assert.equal(r.droppedBy('queue_full'), 3);
    assert.equal(r.queued, 10);
    assert.equal(account(), pushed);
    // A batch delivered: the three dropped from it meanwhile went with it, counted sent only.
    fail = false;
    flushing = r.flush();
    while (answers.length === 0) await new Promise((resolve) => setImmediate(resolve));
    for (; pushed < 16; pushed++) r.push(ev(pushed), 'usr_x');
    answers.shift()!();
    while (r.queued > 0) {
      while (answers.length === 0) await new Promise((resolve) => setImmediate(resolve));
      answers.shift()!();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await flushing;
    assert.equal(r.droppedBy('queue_full'), 3);
    assert.equal(r.sent, 13);
    assert.equal(c.accepted.length, 13);
    assert.equal(account(), pushed);
  });

  it('a heartbeat (exclusive) never goes beside an event batch: it waits for the batch under way, and a flush asked for meanwhile waits for it', async () => {
    const log: string[] = [];
    const gates: (() => void)[] = [];
    const gate = () => new Promise<void>((resolve) => gates.push(resolve));
    const client = {
      sendEvents: async (events: ConnectionEvent[]): Promise<EventBatchResult> => {
        log.push(`batch ${events.map((e) => e.session_id).join(',')} sent`);
        await gate();
        log.push('batch answered');
        return { accepted: events.length, rejected: [] };
      },
    };
    const r = new EventReporter({ client, logger: createMemoryLogger(), maxQueue: 100, intervalMs: 1000 });
    r.push(ev(1));
    const first = r.flush();
    await Promise.resolve();
    let held = ['x1'];
    const beat = r.exclusive(async () => {
      // What the heartbeat lists is read when it is sent, after the batch before it was answered.
      log.push(`heartbeat ${held.join(',')} sent`);
      await gate();
      log.push('heartbeat answered');
      return 'ok';
    });
    held = ['x1', 'x2'];
    r.push(ev(2)); // "x2 online", queued while the first batch is out: it waits for the heartbeat
    assert.equal(r.flush(), first, 'one flush at a time');
    const step = async () => {
      while (gates.length === 0) await new Promise((resolve) => setImmediate(resolve));
      gates.shift()!();
    };
    await step(); // the first batch answered: the flush stops there, the heartbeat waits for no more
    await first;
    const second = r.flush(); // asked for while the heartbeat is out: waits for it
    await step(); // the heartbeat answered
    assert.equal(await beat, 'ok');
    await step(); // the second batch answered
    await second;
    assert.deepEqual(log, ['batch ses_1 sent', 'batch answered', 'heartbeat x1,x2 sent', 'heartbeat answered', 'batch ses_2 sent', 'batch answered']);
    assert.equal(r.queued, 0);
  });

  it('a failed heartbeat lets the batches behind it go', async () => {
    const sent: string[] = [];
    const r = new EventReporter({ client: { sendEvents: async (events: ConnectionEvent[]) => (sent.push(events[0]?.session_id ?? ""), { accepted: events.length, rejected: [] }) }, logger: createMemoryLogger(), maxQueue: 100, intervalMs: 1000 });
    const beat = r.exclusive(async () => {
      throw new Error('control unreachable');
    });
    r.push(ev(7));
    const flushed = r.flush();
    await assert.rejects(beat, /control unreachable/);
    await flushed;
    assert.deepEqual(sent, ['ses_7']);
  });

  it('after a failed batch the next scheduled flush goes between half and all of the interval later (after the Retry-After\'s hold), on its own timer: the ticks before it send nothing', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_800_000_000_000 });
    const unavailable = (retryAfterMs?: number) =>
      new ControlError('CONTROL_REJECTED', 'control plane answered 503', { status: 503, retryable: true, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    const errors: (ControlError | undefined)[] = [unavailable(), unavailable(1200)];
    const c = fakeClient(() => errors.shift());
    const draws = [0.3, 0.8];
    const opts = { client: c, logger: createMemoryLogger(), maxQueue: 100, intervalMs: 1000, now: () => Date.now(), random: () => draws.shift() ?? 0 };
    const r = new EventReporter(opts);
    /** A batch's answer is a chain of promises: they settle before the next macrotask. */
    const settled = () => new Promise((resolve) => setImmediate(resolve));
    r.start();
    try {
      r.push(ev(1));
      t.mock.timers.tick(1000); // the interval's tick: the batch fails (503, no Retry-After)
      await settled();
      assert.equal(c.bodies.length, 1);
      t.mock.timers.tick(649);
      await settled();
      assert.equal(c.bodies.length, 1, 'not before the draw of 0.3: 650 ms');
      t.mock.timers.tick(1);
      await settled();
      assert.equal(c.bodies.length, 2, 'at 650 ms, not at the next tick (1000 ms)');
      // That one fails with Retry-After 1.2 s (hold until +1200): the retry goes 900 ms after it (draw 0.8).
      t.mock.timers.tick(350); // the interval's tick at 2000 (held)
      await settled();
      t.mock.timers.tick(1000); // the tick at 3000: past the Retry-After, before the retry
      await settled();
      assert.equal(c.bodies.length, 2, 'no tick sends before the retry');
      t.mock.timers.tick(749);
      await settled();
      assert.equal(c.bodies.length, 2);
      t.mock.timers.tick(1);
      await settled();
      assert.equal(c.bodies.length, 3, 'at 1650 + 1200 + 900 ms');
      assert.deepEqual([r.sent, r.queued, r.dropped], [1, 0, 0]);
    } finally {
      await r.stop();
    }
  });

  it('a batch delivered after a failed one lets the ticks send again, also when the wall clock stepped back meanwhile', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_800_000_000_000 });
    const errors: (ControlError | undefined)[] = [new ControlError('CONTROL_REJECTED', 'control plane answered 503', { status: 503, retryable: true })];
    const c = fakeClient(() => errors.shift());
    // The wall clock, which NTP may step; the timers run on their own (monotonic) time.
    let step = 0;
    const r = new EventReporter({ client: c, logger: createMemoryLogger(), maxQueue: 100, intervalMs: 1000, now: () => Date.now() + step, random: () => 0 });
    const settled = () => new Promise((resolve) => setImmediate(resolve));
    r.start();
    try {
      r.push(ev(1));
      t.mock.timers.tick(1000); // the tick: the batch fails, its retry 500 ms later (draw 0)
      await settled();
      step = -3_600_000; // NTP steps the clock back an hour
      t.mock.timers.tick(500); // the retry (a timer, not the wall clock) delivers it
      await settled();
      assert.equal(c.bodies.length, 2);
      r.push(ev(2));
      t.mock.timers.tick(500); // the next tick
      await settled();
      assert.equal(c.bodies.length, 3, 'the tick sends the new event');
      assert.deepEqual([r.sent, r.queued, r.dropped], [2, 0, 0]);
    } finally {
      await r.stop();
    }
  });
});
