import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildJwks } from '../../control/ca/lease-issuer.js';
import type { Jwks } from '../../protocol/jwks.js';
import { ManualClock } from '../../shared/clock.js';
import { noopLogger } from '../../shared/logger.js';
import { createControlClient } from '../control-client.js';
import { JwksCache, RETRY_JITTER } from './jwks-cache.js';

const jwksWith = (...kids: string[]): Jwks =>
  buildJwks(kids.map((kid) => ({ kid, publicKey: generateKeyPairSync('ed25519').publicKey, use: kid.startsWith('ca') ? 'ssh-ca' : 'sig' })));

describe('JwksCache', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'jwks-cache-'));
  after(() => rm(dir, { recursive: true, force: true }));

  function fetcher(initial: Jwks | Error) {
    const waiting: (() => void)[] = [];
    const f = {
      doc: initial as Jwks | Error,
      calls: 0,
      /** Resolves at the next fetch. */
      nextCall: () => new Promise<void>((resolve) => waiting.push(resolve)),
      fetchJwks: async () => {
        f.calls++;
        for (const w of waiting.splice(0)) w();
        if (f.doc instanceof Error) throw f.doc;
        return f.doc;
      },
    };
    return f;
  }

  it('fetches a fresh copy and keeps it on disk', async () => {
    const f = fetcher(jwksWith('l1', 'ca1'));
    const cache = new JwksCache({ client: f, file: join(dir, 'a.json'), clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 1000 });
    await cache.init();
    assert.equal(cache.status().source, 'network');
    assert.equal(cache.snapshot?.caBlobs.length, 1);
    assert.deepEqual([...(cache.snapshot?.kids ?? [])].sort(), ['ca1', 'l1']);
  });

  it('serves the stale disk copy when the control plane is down', async () => {
    const file = join(dir, 'b.json');
    const good = jwksWith('l1', 'ca1');
    await new JwksCache({ client: fetcher(good), file, clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 }).init();
    const down = fetcher(new Error('ECONNREFUSED'));
    const cache = new JwksCache({ client: down, file, clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 });
    await cache.init();
    assert.equal(cache.status().source, 'disk');
    assert.deepEqual(cache.snapshot?.jwks, good);
    assert.equal(await cache.refresh(), false, 'a failed refresh keeps the last good copy');
    assert.deepEqual(cache.snapshot?.jwks, good);
  });

  it('never applies a document that can verify nothing (no keys, no lease key, no CA key)', async () => {
    const file = join(dir, 'd.json');
    const good = jwksWith('l1', 'ca1');
    const f = fetcher(good);
    const changes: unknown[] = [];
    const cache = new JwksCache({ client: f, file, clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0, onChange: (s) => changes.push(s) });
    await cache.init();
    changes.length = 0; // the first document, at init
    for (const doc of [{ keys: [] }, jwksWith('ca2'), jwksWith('l2')]) {
      f.doc = doc;
      assert.equal(await cache.refresh(), false, `${doc.keys.length} key(s): not applied`);
      assert.deepEqual(cache.snapshot?.jwks, good, 'the last good copy stays in use');
      assert.equal(cache.status().lastError, 'JWKS_UNUSABLE');
      assert.equal(cache.status().keys, 2);
    }
    assert.deepEqual(changes, [], 'no withdrawal reported');
    // Nor kept on disk for the next start.
    const restarted = new JwksCache({ client: fetcher(new Error('down')), file, clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 });
    await restarted.init();
    assert.deepEqual(restarted.snapshot?.jwks, good);
    // A document that withdraws one key and keeps one of each kind is applied.
    f.doc = jwksWith('l2', 'ca1');
    assert.equal(await cache.refresh(), true);
    assert.equal(changes.length, 1);
    assert.equal(cache.status().lastError, null);
  });

  it('does not start from a disk copy that can verify nothing (kept by a relay before canVerify)', async () => {
    for (const [name, doc] of [['e.json', { keys: [] }], ['f.json', jwksWith('ca1')], ['g.json', jwksWith('l1')]] as const) {
      const file = join(dir, name);
      await writeFile(file, JSON.stringify({ fetched_at: new Date(0).toISOString(), jwks: doc }));
      const cache = new JwksCache({ client: fetcher(new Error('down')), file, clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 });
      await cache.init();
      assert.equal(cache.snapshot, undefined, `${doc.keys.length} key(s) on disk: not in use`);
      assert.equal(cache.status().keys, 0, 'so /healthz says no_trust');
      assert.equal(cache.status().source, 'none');
    }
  });

  it('after a failed refresh the schedule tries again after minRefreshMs, not refreshMs: lastError clears, and keys rotated meanwhile arrive, soon after the control plane answers again', { timeout: 30_000 }, async (t) => {
    const f = fetcher(jwksWith('l1', 'ca1'));
    let changed = (): void => undefined;
    const cache = new JwksCache({ client: f, file: join(dir, 'h.json'), clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 10, onChange: () => changed() });
    await cache.init();
    f.doc = Object.assign(new Error('control plane unreachable'), { code: 'CONTROL_UNREACHABLE' });
    assert.equal(await cache.refresh(), false);
    assert.equal(cache.status().lastError, 'CONTROL_UNREACHABLE');
    // The cache's timer does not hold the process open (unref), so the test does, until it ends or times out.
    const hold = setInterval(() => undefined, 1000);
    t.signal.addEventListener('abort', () => clearInterval(hold));
    try {
      // Still down: the schedule tries again (with refreshMs alone it would wait 1e9 ms).
      const retried = f.nextCall();
      cache.start();
      await retried;
      // Back, with a rotated key: the next try takes it and clears the error.
      const rotated = jwksWith('l2', 'ca1');
      const taken = new Promise<void>((resolve) => (changed = resolve));
      f.doc = rotated;
      await taken;
      assert.deepEqual(cache.snapshot?.jwks, rotated);
      assert.equal(cache.status().lastError, null);
      assert.equal(cache.status().source, 'network');
    } finally {
      cache.stop();
      clearInterval(hold);
    }
  });

  it('retries after a failed refresh are spread over up to RETRY_JITTER more than minRefreshMs, never past refreshMs: 100 relays do not retry in the same second', async () => {
    let r = 0;
    const opts = { client: fetcher(new Error('down')), file: join(dir, 'i.json'), clock: new ManualClock(), logger: noopLogger, minRefreshMs: 10_000, random: () => r };
    const cache = new JwksCache({ ...opts, refreshMs: 300_000 });
    await cache.init();
    assert.equal(cache.retryDelay(), 10_000, 'never sooner than minRefreshMs');
    r = 0.5;
    assert.equal(cache.retryDelay(), 10_000 * (1 + RETRY_JITTER / 2));
    r = 0.999_999;
    assert.equal(cache.retryDelay(), 10_000 * (1 + RETRY_JITTER));
    // Injected draws outside [0, 1), and one that is not a number (not a 1 ms retry), count as 0 (drawShare).
    for (const [draw, want] of [[-1, 10_000], [1, 10_000], [7, 10_000], [Infinity, 10_000], [-Infinity, 10_000], [NaN, 10_000]] as const) {
      r = draw;
      assert.equal(cache.retryDelay(), want, `draw ${draw}`);
    }
    const throwing = new JwksCache({ ...opts, refreshMs: 300_000, random: () => { throw new Error('injected: a draw that throws'); } });
    await throwing.init();
    assert.equal(throwing.retryDelay(), 10_000, 'a draw that throws counts as 0 too (it stopped the schedule)');
    r = 0.999_999;
    const short = new JwksCache({ ...opts, refreshMs: 12_000 });
    await short.init();
    assert.equal(short.retryDelay(), 12_000, 'never later than refreshMs');
    // 100 relays, each with its own draw (a seeded sequence here): spread over the 5 s past 10 s.
    let seed = 42;
    r = 0;
    const relays = Array.from({ length: 100 }, () => new JwksCache({ ...opts, refreshMs: 300_000, random: () => (seed = (seed * 16_807) % 2_147_483_647) / 2_147_483_647 }));
    const delays = await Promise.all(relays.map(async (c) => (await c.init(), c.retryDelay())));
    assert.ok(delays.every((d) => d >= 10_000 && d <= 15_000), delays.join(','));
    const seconds = new Set(delays.map((d) => Math.floor(d / 1000)));
    assert.deepEqual([...seconds].sort(), [10, 11, 12, 13, 14], 'every second of the window has relays in it');
  });

  it('honours the Retry-After of a failed refresh (the control plane\'s 503), within minRefreshMs and refreshMs, for the schedule and for unknown keys', async () => {
    let answer: { status: number; retryAfter?: string } = { status: 503, retryAfter: '45' };
    const good = jwksWith('l1', 'ca1');
    let hits = 0;
    const srv = createServer((_req, res) => {
      hits++;
      if (answer.status === 200) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(good));
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/problem+json', ...(answer.retryAfter ? { 'retry-after': answer.retryAfter } : {}) });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Unavailable', code: 'DATABASE_UNAVAILABLE', status: answer.status, request_id: 'req_1' }));
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => undefined, timeoutMs: 5_000 });
    const clock = new ManualClock();
    let r = 0;
    const cache = new JwksCache({ client, file: join(dir, 'j.json'), clock, logger: noopLogger, refreshMs: 120_000, minRefreshMs: 10_000, random: () => r });
    try {
      await cache.init();
      assert.equal(cache.status().lastError, 'DATABASE_UNAVAILABLE', "the control plane's code, for /healthz");
      assert.equal(cache.retryDelay(), 45_000, 'Retry-After: 45');
      r = 0.999_999;
      assert.equal(cache.retryDelay(), 45_000 * (1 + RETRY_JITTER), 'spread past it too: every relay got the same Retry-After');
      r = 0;
      // An unknown key does not bring a refresh before Retry-After either.
      clock.advance(10_000);
      assert.equal(await cache.refreshForUnknownKey(), false);
      assert.equal(hits, 1);
      // What the control plane sends while its database is away (DATABASE_RETRY_AFTER_SECONDS): less than minRefreshMs.
      answer = { status: 503, retryAfter: '2' };
      clock.advance(35_000);
      assert.equal(await cache.refreshForUnknownKey(), false);
      assert.equal(hits, 2);
      assert.equal(cache.retryDelay(), 10_000, 'never sooner than minRefreshMs');
      answer = { status: 503, retryAfter: '200' };
      await cache.refresh();
      assert.equal(cache.retryDelay(), 120_000, 'never later than refreshMs');
      answer = { status: 503 };
      await cache.refresh();
      assert.equal(cache.retryDelay(), 10_000, 'without Retry-After: minRefreshMs');
      answer = { status: 429, retryAfter: 'Thu, 01 Jan 1970 00:00:00 GMT' };
      await cache.refresh();
      assert.equal(cache.retryDelay(), 10_000, 'a date already past: minRefreshMs');
      answer = { status: 200 };
      assert.equal(await cache.refresh(), true);
      assert.equal(cache.status().lastError, null);
    } finally {
      await client.close();
      srv.close();
    }
  });

  it("says in lastError (/healthz) the control plane's code when it refused the fetch (API_LEVEL_UNSUPPORTED), else the client's", async () => {
    let body: string | undefined;
    const srv = createServer((_req, res) => {
      res.writeHead(body === undefined ? 502 : 400, { 'content-type': 'application/problem+json' });
      res.end(body ?? '{}');
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => undefined, timeoutMs: 5_000 });
    const cache = new JwksCache({ client, file: join(dir, 'level.json'), clock: new ManualClock(), logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 });
    try {
      body = JSON.stringify({ type: 'about:blank', title: 'x', status: 400, code: 'API_LEVEL_UNSUPPORTED', detail: 'tunnel-node/9 states API level 2', request_id: 'req_1' });
      await cache.init();
      assert.equal(cache.status().lastError, 'API_LEVEL_UNSUPPORTED');
      assert.equal(cache.status().keys, 0, '/healthz: no_trust, and lastError says why');
      body = undefined;
      await cache.refresh();
      assert.equal(cache.status().lastError, 'CONTROL_REJECTED', 'no code of its own: the client\'s');
    } finally {
      await client.close();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it('refreshes on an unknown key at most once per interval', async () => {
    const clock = new ManualClock();
    const f = fetcher(jwksWith('l1', 'ca1'));
    const cache = new JwksCache({ client: f, file: join(dir, 'c.json'), clock, logger: noopLogger, refreshMs: 1e9, minRefreshMs: 10_000 });
    await cache.init();
    f.doc = jwksWith('l1', 'l2', 'ca1');
    assert.equal(await cache.refreshForUnknownKey(), false, 'rate limited right after init');
    assert.equal(f.calls, 1);
    clock.advance(10_000);
    assert.equal(await cache.refreshForUnknownKey(), true);
    assert.equal(f.calls, 2);
    assert.ok(cache.snapshot?.kids.has('l2'));
    assert.equal(await cache.refreshForUnknownKey(), false);
    assert.equal(f.calls, 2);
  });
});
