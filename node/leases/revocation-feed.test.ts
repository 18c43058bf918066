import assert from 'node:assert/strict';
import { once, EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ControlError, type RevocationFeed as Feed } from '../control-client.js';
import { noopLogger, type Logger } from '../../shared/logger.js';
import { ManualClock } from '../../shared/clock.js';
import { RevocationFeed } from './revocation-feed.js';

const EXP = 4_000_000_000;

/** A control plane whose answers the test hands out one by one; records each request. */
function scriptedControl() {
  const calls: { cursor: string | undefined; waitMs: number | undefined }[] = [];
  const pending: ((f: Feed) => void)[] = [];
  const ev = new EventEmitter();
  let closed: Feed | undefined;
  return {
    calls,
    client: {
      revocations: (cursor: string | undefined, waitMs?: number) =>
        new Promise<Feed>((resolve) => {
          calls.push({ cursor, waitMs });
          if (closed) return resolve(closed);
          pending.push(resolve);
          ev.emit('call');
        }),
    },
    /** Waits for the next request, answers it. */
    async answer(f: Feed) {
      while (pending.length === 0) await once(ev, 'call');
      pending.shift()!(f);
    },
    /** Answers every request from now on with `f` at once (for stopping). */
    close(f: Feed) {
      closed = f;
      for (const p of pending.splice(0)) p(f);
    },
    async nextCall() {
      while (pending.length === 0) await once(ev, 'call');
    },
  };
}

type FeedOptions = ConstructorParameters<typeof RevocationFeed>[0];

/** A feed with its state file in a fresh directory (`file`), test defaults overridden by `opts`; `cleanup` removes the directory. */
function feedWith(opts: Pick<FeedOptions, 'client'> & Partial<FeedOptions>) {
  const dir = mkdtempSync(join(tmpdir(), 'revfeed-'));
  const file = join(dir, 'revocations.json');
  // The feed's timers are unref'd (they must not hold a relay open); this keeps the test's loop alive.
  const keepAlive = setInterval(() => {}, 1000);
  const feed = new RevocationFeed({ clock: { now: () => new Date() }, logger: noopLogger, intervalMs: 3_600_000, file, onRevoked: () => {}, ...opts });
  return {
    feed,
    file,
    cleanup: () => {
      clearInterval(keepAlive);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('RevocationFeed long poll', () => {
  it('asks to wait, and polls again at once after news (no interval between a revocation and the next poll)', async () => {
    const control = scriptedControl();
    const revoked: string[] = [];
    // An interval far longer than the test: a poll after news must not wait for it.
    const { feed, cleanup } = feedWith({ client: control.client, waitMs: 20_000, onRevoked: (id) => revoked.push(id) });
    try {
      feed.start();
      await control.answer({ cursor: '1', revocations: [{ lease_id: 'lse_a', exp: EXP }] });
      await control.answer({ cursor: '1', revocations: [{ lease_id: 'lse_b', exp: EXP }] }); // pushed: cursor unchanged, news
      await control.answer({ cursor: '2', revocations: [{ lease_id: 'lse_b', exp: EXP }] }); // the same from the database
      await control.nextCall();
      assert.deepEqual(revoked, ['lse_a', 'lse_b', 'lse_b']);
      assert.deepEqual(
        control.calls.map((c) => [c.cursor, c.waitMs]),
        [
          [undefined, 20_000],
          ['1', 20_000],
          ['1', 20_000],
          ['2', 20_000],
        ],
      );
      assert.ok(feed.isRevoked('lse_a') && feed.isRevoked('lse_b'));
    } finally {
      const stopping = feed.stop();
      control.close({ cursor: '2', revocations: [] });
      await stopping;
      cleanup();
    }
  });

  it('a poll that brought nothing (or only known revocations) is followed by the next one only after the interval', async () => {
    const control = scriptedControl();
    const { feed, cleanup } = feedWith({ client: control.client, waitMs: 20_000 });
    try {
      feed.start();
      await control.answer({ cursor: '3', revocations: [{ lease_id: 'lse_a', exp: EXP }] });
      await control.answer({ cursor: '3', revocations: [{ lease_id: 'lse_a', exp: EXP }] }); // nothing new
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(control.calls.length, 2, 'no further poll before the interval');
    } finally {
      const stopping = feed.stop();
      control.close({ cursor: '3', revocations: [] });
      await stopping;
      cleanup();
    }
  });

  it('after a refused credential, the relay comes back only once it read every page of revocations it missed', async () => {
    const answers: (Feed | Error)[] = [
      new ControlError('CONTROL_REJECTED', 'control plane answered 401', { status: 401, retryable: false }),
      { cursor: '1', revocations: [{ lease_id: 'lse_a', exp: EXP }] },
      { cursor: '2', revocations: [{ lease_id: 'lse_b', exp: EXP }] },
      { cursor: '2', revocations: [] },
    ];
    const waits: (number | undefined)[] = [];
    const client = {
      revocations: async (_cursor: string | undefined, waitMs?: number, signal?: AbortSignal) => {
        waits.push(waitMs);
        const a = answers.shift();
        // Then holds the long poll, until the relay stops.
        if (a === undefined) return new Promise<Feed>((_resolve, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted'))));
        if (a instanceof Error) throw a;
        return a;
      },
    };
    const back = new EventEmitter();
    const revoked: string[] = [];
    const seen: { ok: boolean; revoked: string[] }[] = [];
    const { feed, cleanup } = feedWith({
      client,
      intervalMs: 10,
      waitMs: 20_000,
      onRevoked: (id) => revoked.push(id),
      onCredential: (ok) => {
        seen.push({ ok, revoked: [...revoked] });
        if (ok) back.emit('back');
      },
    });
    try {
      const accepted = once(back, 'back');
      feed.start();
      await accepted;
      assert.deepEqual(seen, [
        { ok: false, revoked: [] },
        { ok: true, revoked: ['lse_a', 'lse_b'] },
      ]);
      assert.deepEqual(waits.slice(0, 4), [20_000, 0, 0, 0], 'no long poll while out of service');
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it('stop() ends a poll the control plane is holding (a relay does not wait out the long poll at shutdown)', async () => {
    let signalSeen: AbortSignal | undefined;
    const called = new EventEmitter();
    const client = {
      revocations: (_cursor: string | undefined, _waitMs?: number, signal?: AbortSignal) =>
        new Promise<Feed>((_resolve, reject) => {
          signalSeen = signal;
          signal?.addEventListener('abort', () => reject(new Error('aborted')));
          called.emit('call');
        }),
    };
    const logged: string[] = [];
    const logger = { ...noopLogger, warn: (m: string) => void logged.push(m) };
    const { feed, cleanup } = feedWith({ client, logger, intervalMs: 1000, waitMs: 20_000 });
    try {
      const first = once(called, 'call');
      feed.start();
      await first;
      assert.ok(signalSeen);
      await feed.stop();
      assert.equal(signalSeen.aborted, true);
      assert.deepEqual(logged, [], 'stopping is not reported as the feed being unreachable');
    } finally {
      cleanup();
    }
  });

  it('stop() ends a catch-up after a refused credential between pages and mid-page (it does not read on to 100 pages), and keeps what it read', { timeout: 20_000 }, async () => {
    let stopping = false;
    let n = 0;
    const answered: string[] = [];
    const asked = new EventEmitter();
    const client = {
      revocations: (_cursor: string | undefined, _waitMs?: number, signal?: AbortSignal) =>
        new Promise<Feed>((resolve, reject) => {
          n++;
          if (n === 1) return reject(new ControlError('CONTROL_REJECTED', 'control plane answered 401', { status: 401, retryable: false }));
          asked.emit('page', n);
          // Every page has news (the feed never ends); once stop() was called, a page is held
          // until the request is aborted.
          if (!stopping) {
            answered.push(`lse_${n}`);
            return resolve({ cursor: String(n), revocations: [{ lease_id: `lse_${n}`, exp: EXP }] });
          }
          if (!signal) return; // held for good: stop() would never return
          if (signal.aborted) return reject(new Error('aborted'));
          signal.addEventListener('abort', () => reject(new Error('aborted')));
        }),
    };
    const { feed, file, cleanup } = feedWith({ client, intervalMs: 10, waitMs: 20_000 });
    try {
      feed.start();
      // Well into the catch-up (plain requests, one page after another).
      await new Promise<void>((resolve) => asked.on('page', (k: number) => k === 5 && resolve()));
      stopping = true;
      await feed.stop();
      assert.ok(n < 10, `${n} requests: the catch-up went on after stop()`);
      // Every page it was given is on disk: a restart that cannot reach control starts from it.
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { cursor: string; revoked: { lease_id: string }[] };
      assert.equal(saved.cursor, answered.at(-1)!.slice('lse_'.length));
      assert.deepEqual(saved.revoked.map((r) => r.lease_id), answered);
    } finally {
      cleanup();
    }
  });

  it('a refused node credential (401) is reported once, apart from unreachable, and its end once', async () => {
    const answers: (Feed | Error)[] = [
      new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true }),
      new ControlError('CONTROL_REJECTED', 'control plane answered 401', { status: 401, retryable: false }),
      new ControlError('CONTROL_REJECTED', 'control plane answered 401', { status: 401, retryable: false }),
      { cursor: '1', revocations: [] },
      { cursor: '1', revocations: [] },
    ];
    const client = {
      revocations: async () => {
        const a = answers.shift()!;
        if (a instanceof Error) throw a;
        return a;
      },
    };
    const calls: boolean[] = [];
    const { feed, cleanup } = feedWith({ client, intervalMs: 1000, onCredential: (ok) => calls.push(ok) });
    try {
      await feed.pollOnce();
      assert.deepEqual(calls, [], 'unreachable is not a refused credential');
      await feed.pollOnce();
      await feed.pollOnce();
      assert.deepEqual(calls, [false]);
      assert.equal(feed.status().credentialRejected, true);
      await feed.pollOnce();
      await feed.pollOnce();
      assert.deepEqual(calls, [false, true]);
      assert.equal(feed.status().credentialRejected, false);
    } finally {
      cleanup();
    }
  });

  it('after a failed poll the next one is plain (no long poll), so the feed is reachable again as soon as control answers; then long polls again', async () => {
    const answers: (Feed | Error)[] = [new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true }), { cursor: '1', revocations: [] }];
    const waits: (number | undefined)[] = [];
    const called = new EventEmitter();
    const client = {
      revocations: (_cursor: string | undefined, waitMs?: number, signal?: AbortSignal) => {
        waits.push(waitMs);
        called.emit('call');
        const a = answers.shift();
        if (a instanceof Error) return Promise.reject(a);
        if (a) return Promise.resolve(a);
        // Held like a long poll, until stop().
        return new Promise<Feed>((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason)));
      },
    };
    const { feed, cleanup } = feedWith({ client, waitMs: 20_000 });
    try {
      await feed.pollOnce(); // fails
      assert.equal(feed.status().failing, true);
      feed.start();
      const deadline = AbortSignal.timeout(10_000);
      while (waits.length < 3) await once(called, 'call', { signal: deadline });
      // The poll after the failure was plain and brought the feed back; the one after it waits again.
      assert.equal(feed.status().failing, false);
      assert.deepEqual(waits, [0, 0, 20_000]);
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it("status() says why polls fail: the control plane's code (API_LEVEL_UNSUPPORTED), else the client's; cleared when one is answered", async () => {
    const levelRefused = new ControlError('CONTROL_REJECTED', 'control plane answered 400', { status: 400, problemCode: 'API_LEVEL_UNSUPPORTED', retryable: false });
    const answers: (Feed | Error)[] = [levelRefused, new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true }), { cursor: '1', revocations: [] }];
    const client = { revocations: () => { const a = answers.shift()!; return a instanceof Error ? Promise.reject(a) : Promise.resolve(a); } };
    const { feed, cleanup } = feedWith({ client });
    try {
      assert.equal(feed.status().lastError, null);
      await feed.pollOnce();
      assert.deepEqual([feed.status().failing, feed.status().lastError], [true, 'API_LEVEL_UNSUPPORTED']);
      await feed.pollOnce();
      assert.deepEqual([feed.status().failing, feed.status().lastError], [true, 'CONTROL_UNREACHABLE']);
      await feed.pollOnce();
      assert.deepEqual([feed.status().failing, feed.status().lastError], [false, null]);
    } finally {
      cleanup();
    }
  });

  it('a callback that throws does not stop the loop: the next poll comes as usual', async () => {
    const answers: (Feed | Error)[] = [new ControlError('CONTROL_REJECTED', 'control plane answered 401', { status: 401, retryable: false })];
    const client = {
      revocations: async () => {
        const a = answers.shift() ?? { cursor: '1', revocations: [] };
        if (a instanceof Error) throw a;
        return a;
      },
    };
    const seen = new EventEmitter();
    const calls: boolean[] = [];
    const errors: string[] = [];
    const logger: Logger = { ...noopLogger, error: (msg: string) => void errors.push(msg), child: () => logger };
    const { feed, cleanup } = feedWith({
      client,
      logger,
      intervalMs: 10,
      onCredential: (ok) => {
        calls.push(ok);
        seen.emit('credential', ok);
        // The relay's callback closing its connections, one of which throws.
        if (!ok) throw new Error('injected: a callback that throws');
      },
    });
    try {
      feed.start();
      // Without the catch the loop stopped at the throw: 'true' never came, and this wait fails.
      const deadline = AbortSignal.timeout(10_000);
      while (!calls.includes(true)) await once(seen, 'credential', { signal: deadline });
      assert.deepEqual(calls, [false, true]);
      assert.deepEqual(errors, ['revocation feed: a callback failed; polling goes on']);
    } finally {
      await feed.stop();
      cleanup();
    }
  });
});

describe('RevocationFeed retry after a failed poll', () => {
  /** The largest draw there is (the largest number below 1). */
  const TOP = 1 - Number.EPSILON / 2;
  const unavailable = (retryAfterMs?: number) =>
    new ControlError('CONTROL_REJECTED', 'control plane answered 503', { status: 503, problemCode: 'DATABASE_UNAVAILABLE', retryable: true, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });

  it('waits between half and all of the interval, never under the Retry-After as far as the interval goes', async () => {
    const answers: (Feed | Error)[] = [unavailable(), unavailable(800), unavailable(60_000), { cursor: '1', revocations: [] }, unavailable()];
    const client = { revocations: () => { const a = answers.shift()!; return a instanceof Error ? Promise.reject(a) : Promise.resolve(a); } };
    let r = 0;
    const { feed, cleanup } = feedWith({ client, intervalMs: 1000, random: () => r });
    try {
      await feed.pollOnce();
      assert.deepEqual([0, 0.5, TOP].map((d) => ((r = d), feed.retryDelay())), [500, 750, 1000]);
      await feed.pollOnce();
      assert.deepEqual([0, 0.5, TOP].map((d) => ((r = d), feed.retryDelay())), [800, 900, 1000], 'Retry-After: 800 ms');
      await feed.pollOnce();
      // Past the interval: within it (revocations must arrive once control answers), and still
      // spread, in its last quarter (every relay gets the same Retry-After).
      assert.deepEqual([0, 0.5, TOP].map((d) => ((r = d), feed.retryDelay())), [750, 875, 1000], 'a Retry-After past the interval');
      await feed.pollOnce();
      await feed.pollOnce();
      assert.equal(feed.status().failing, true);
      r = 0;
      assert.equal(feed.retryDelay(), 500, 'the Retry-After of an earlier failure is forgotten');
      r = NaN;
      assert.equal(feed.retryDelay(), 500, 'a draw that is not in [0, 1) counts as 0');
      // 100 relays' draws land over the whole half-interval.
      const delays = Array.from({ length: 100 }, (_, i) => ((r = i < 99 ? i / 99 : TOP), feed.retryDelay()));
      assert.deepEqual([Math.min(...delays), Math.max(...delays), new Set(delays).size], [500, 1000, 100]);
    } finally {
      cleanup();
    }
  });

  it('the loop waits the drawn delay counted from the failure: a held long poll that fails (control restarting) is not asked again at once, nor a failure after it at the interval', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_800_000_000_000 });
    const held: ((err: Error) => void)[] = [];
    let calls = 0;
    const client = {
      revocations: (_cursor: string | undefined, waitMs?: number) => {
        calls++;
        // The first poll is held (a long poll) until the test fails it; the next ones fail at once.
        return waitMs ? new Promise<Feed>((_resolve, reject) => held.push(reject)) : Promise.reject(unavailable());
      },
    };
    const draws = [0.5, 0];
    const { feed, cleanup } = feedWith({ client, intervalMs: 1000, waitMs: 20_000, random: () => draws.shift() ?? 0 });
    /** The feed's answer to a poll is a chain of promises: they settle before the next macrotask. */
    const settled = () => new Promise((resolve) => setImmediate(resolve));
    try {
      feed.start();
      assert.equal(calls, 1);
      t.mock.timers.tick(5000); // held past the interval
      held.shift()!(unavailable());
      await settled();
      t.mock.timers.tick(749);
      assert.equal(calls, 1, 'not at once: the draw of 0.5 waits 750 ms');
      t.mock.timers.tick(1);
      assert.equal(calls, 2);
      await settled();
      t.mock.timers.tick(499);
      assert.equal(calls, 2);
      t.mock.timers.tick(1);
      assert.equal(calls, 3, 'the draw of 0 waits 500 ms, not the interval');
    } finally {
      await feed.stop();
      cleanup();
    }
  });
});

describe('RevocationFeed that has not been answered for maxStaleMs (fail closed)', () => {
  const down = () => new ControlError('CONTROL_UNREACHABLE', 'down', { retryable: true });

  it('turns stale once, maxStaleMs after the last answered poll, and back only once a poll reads the feed to its end', async () => {
    // Answers: the first poll; then the control plane is down; then one page with news (not the
    // end) and the page after it (the end).
    let failing = false;
    const pages: Feed[] = [];
    const client = {
      revocations: async () => {
        if (failing) throw down();
        return pages.shift() ?? { cursor: '2', revocations: [] };
      },
    };
    const seen = new EventEmitter();
    const calls: boolean[] = [];
    // Whether the revocation made while the feed was down was known when the feed came back.
    let knownWhenBack: boolean | undefined;
    const { feed, cleanup } = feedWith({
      client,
      intervalMs: 20,
      maxStaleMs: 300,
      onStale: (stale) => {
        calls.push(stale);
        if (!stale) knownWhenBack = feed.isRevoked('lse_late');
        seen.emit('stale', stale);
      },
    });
    try {
      await feed.pollOnce();
      failing = true;
      feed.start();
      const deadline = AbortSignal.timeout(10_000);
      await once(seen, 'stale', { signal: deadline });
      assert.deepEqual(calls, [true]);
      assert.equal(feed.stale, true);
      assert.equal(feed.status().stale, true);
      assert.equal(feed.status().failing, true);
      // Back: the first answered poll brings a page that is not the feed's end, so the feed stays
      // stale until the page after it (read at once, plainly) says nothing more came.
      pages.push({ cursor: '1', revocations: [{ lease_id: 'lse_late', exp: EXP }] });
      failing = false;
      await once(seen, 'stale', { signal: deadline });
      assert.deepEqual(calls, [true, false]);
      assert.equal(knownWhenBack, true, 'the revocation made meanwhile is known before the feed is fresh again');
      assert.equal(feed.stale, false);
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it('answered polls keep it fresh: a feed that answers every poll never turns stale', async () => {
    const client = { revocations: async () => ({ cursor: '1', revocations: [] }) };
    const seen = new EventEmitter();
    const polls: number[] = [];
    const counting = {
      revocations: async () => {
        polls.push(polls.length);
        seen.emit('poll');
        return client.revocations();
      },
    };
    const calls: boolean[] = [];
    const { feed, cleanup } = feedWith({ client: counting, intervalMs: 50, maxStaleMs: 200, onStale: (s) => calls.push(s) });
    try {
      feed.start();
      // Ten polls 50 ms apart span 450 ms, more than twice maxStaleMs.
      const deadline = AbortSignal.timeout(10_000);
      while (polls.length < 10) await once(seen, 'poll', { signal: deadline });
      assert.deepEqual(calls, []);
      assert.equal(feed.stale, false);
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it('a restart does not renew trust: a state file last answered longer ago than maxStaleMs starts stale when the control plane is down', async () => {
    const clock = new ManualClock(Date.parse('2026-12-06T10:00:00Z'));
    const client = { revocations: async (): Promise<Feed> => { throw down(); } };
    const calls: boolean[] = [];
    const { feed, file, cleanup } = feedWith({ client, clock, maxStaleMs: 300_000, onStale: (s) => calls.push(s) });
    try {
      writeFileSync(file, JSON.stringify({ cursor: '7', revoked: [], checked_at: clock.now().getTime() / 1000 - 301 }));
      await feed.load();
      await feed.pollOnce();
      assert.equal(feed.status().lastSuccessAt, '2026-12-06T09:54:59.000Z', 'the last answered poll is the one the file records');
      feed.start();
      assert.deepEqual(calls, [true], 'stale at start, before the relay listens');
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it('a state file answered within maxStaleMs starts fresh, and one with checked_at in the future counts as answered now, never later', async () => {
    const clock = new ManualClock(Date.parse('2026-12-06T10:00:00Z'));
    const client = { revocations: async (): Promise<Feed> => { throw down(); } };
    for (const checkedAt of [clock.now().getTime() / 1000 - 200, clock.now().getTime() / 1000 + 86_400]) {
      const calls: boolean[] = [];
      const { feed, file, cleanup } = feedWith({ client, clock, maxStaleMs: 300_000, onStale: (s) => calls.push(s) });
      try {
        writeFileSync(file, JSON.stringify({ cursor: '7', revoked: [], checked_at: checkedAt }));
        await feed.load();
        feed.start();
        assert.deepEqual(calls, []);
        assert.ok(Date.parse(feed.status().lastSuccessAt!) <= clock.now().getTime(), 'not later than now');
      } finally {
        await feed.stop();
        cleanup();
      }
    }
  });

  it('a state file with a checked_at before 1970 (not one a relay wrote) starts stale, and status() still answers', async () => {
    const clock = new ManualClock(Date.parse('2026-12-06T10:00:00Z'));
    const client = { revocations: async (): Promise<Feed> => { throw down(); } };
    for (const checkedAt of [-1, -1e13, -1e300]) {
      const calls: boolean[] = [];
      const { feed, file, cleanup } = feedWith({ client, clock, maxStaleMs: 300_000, onStale: (s) => calls.push(s) });
      try {
        writeFileSync(file, JSON.stringify({ cursor: '7', revoked: [], checked_at: checkedAt }));
        await feed.load();
        feed.start();
        assert.deepEqual(calls, [true], `checked_at ${checkedAt}`);
        assert.equal(feed.status().lastSuccessAt, '1970-01-01T00:00:00.000Z');
      } finally {
        await feed.stop();
        cleanup();
      }
    }
  });

  it('an unreadable state file starts stale when the control plane is down (not fresh for maxStaleMs, knowing no revocation)', async () => {
    const client = { revocations: async (): Promise<Feed> => { throw down(); } };
    for (const content of ['{"cursor":"7","revoked":[],"checked_at":"soon"}', '{"cursor":', '[]']) {
      const calls: boolean[] = [];
      const { feed, file, cleanup } = feedWith({ client, maxStaleMs: 300_000, onStale: (s) => calls.push(s) });
      try {
        writeFileSync(file, content);
        await feed.load();
        await feed.pollOnce();
        feed.start();
        assert.deepEqual(calls, [true], content);
      } finally {
        await feed.stop();
        cleanup();
      }
    }
  });

  it('an unreadable state file with the control plane up: in service once the feed is read from the beginning', async () => {
    const client = { revocations: async (cursor: string | undefined) => (cursor === undefined ? { cursor: '1', revocations: [{ lease_id: 'lse_a', exp: EXP }] } : { cursor, revocations: [] }) };
    const calls: boolean[] = [];
    const { feed, file, cleanup } = feedWith({ client, maxStaleMs: 300_000, onStale: (s) => calls.push(s) });
    try {
      writeFileSync(file, '{"cursor":');
      await feed.load();
      await feed.pollOnce();
      feed.start();
      assert.deepEqual(calls, []);
      assert.equal(feed.isRevoked('lse_a'), true);
    } finally {
      await feed.stop();
      cleanup();
    }
  });

  it('a maxStaleMs past what setTimeout takes (24.8 days) arms one timer, not one every millisecond', async () => {
    const client = { revocations: async () => ({ cursor: '1', revocations: [] }) };
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const { feed, cleanup } = feedWith({ client, maxStaleMs: 30 * 86_400_000 });
    try {
      await feed.pollOnce();
      feed.start();
      // A delay past 2^31 - 1 ms is emitted as a warning on the next tick, and fires after 1 ms.
      for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
      assert.deepEqual(warnings.filter((w) => w === 'TimeoutOverflowWarning'), []);
      assert.equal(feed.stale, false);
    } finally {
      process.off('warning', onWarning);
      await feed.stop();
      cleanup();
    }
  });

  it('writes when a poll was last answered to its state file (at most once a minute when nothing else changed)', async () => {
    const clock = new ManualClock(Date.parse('2026-12-06T10:00:00Z'));
    const client = { revocations: async () => ({ cursor: '1', revocations: [] }) };
    const { feed, file, cleanup } = feedWith({ client, clock, maxStaleMs: 300_000 });
    const checkedAt = () => (JSON.parse(readFileSync(file, 'utf8')) as { checked_at?: number }).checked_at;
    try {
      await feed.pollOnce();
      assert.equal(checkedAt(), clock.now().getTime() / 1000);
      clock.advance(30_000);
      await feed.pollOnce();
      assert.equal(checkedAt(), clock.now().getTime() / 1000 - 30, 'not rewritten 30 s later');
      clock.advance(30_000);
      await feed.pollOnce();
      assert.equal(checkedAt(), clock.now().getTime() / 1000, 'rewritten a minute after the last write');
    } finally {
      cleanup();
    }
  });

  it('a stale callback that throws does not stop the feed: it still comes back when answered', async () => {
    let failing = true;
    const client = { revocations: async () => { if (failing) throw down(); return { cursor: '1', revocations: [] }; } };
    const seen = new EventEmitter();
    const errors: string[] = [];
    const logger: Logger = { ...noopLogger, error: (msg: string) => void errors.push(msg), child: () => logger };
    const { feed, cleanup } = feedWith({
      client,
      logger,
      intervalMs: 20,
      maxStaleMs: 100,
      onStale: (stale) => {
        seen.emit('stale', stale);
        if (stale) throw new Error('injected: a callback that throws');
      },
    });
    try {
      feed.start();
      const deadline = AbortSignal.timeout(10_000);
      await once(seen, 'stale', { signal: deadline });
      assert.equal(feed.stale, true);
      failing = false;
      await once(seen, 'stale', { signal: deadline });
      assert.equal(feed.stale, false);
      assert.deepEqual(errors, ['revocation feed: the stale callback failed']);
    } finally {
      await feed.stop();
      cleanup();
    }
  });
});
