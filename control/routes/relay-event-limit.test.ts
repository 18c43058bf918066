/**
 * The per-relay bound on event batches (services/relay-event-limit.ts): a compromised relay
 * sending batches back to back is refused, 429 with Retry-After, once past the bound, and what it
 * sends then is not recorded; the relay's own reporter (node/events/reporter.ts) at its real
 * rate never meets the bound, and when it does meet it, holds its events until Retry-After and
 * then delivers them all. Runs on PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { recordingLogger } from '../testing/recording-logger.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import { enrollNode, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { EventReporter } from '../../node/events/reporter.js';
import { ControlError, readRetryAfter, type ControlClient } from '../../node/control-client.js';
import type { ConnectionEvent } from '../../protocol/node-api.js';

const BATCHES = 10;
const EVENTS = 1500;

/** The relay's control client's sendEvents, over the test app's requests (its errors as the real client's). */
function clientOf(t: TestApp, node: TestNode): Pick<ControlClient, 'sendEvents'> & { requests: number } {
  const c = {
    requests: 0,
    async sendEvents(events: ConnectionEvent[]) {
      c.requests++;
      const r = await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events } });
      if (r.status === 202) return r.body as { accepted: number; rejected: [] };
      const retryAfterMs = readRetryAfter(r.headers.get('retry-after') ?? undefined);
      throw new ControlError('CONTROL_REJECTED', `control plane answered ${r.status}`, {
        status: r.status,
        retryable: r.status >= 500 || r.status === 429,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    },
  };
  return c;
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`relay event batch bound (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let adminToken: () => Promise<string>;
    before(async () => {
      t = await makeApp({ settings: { relayEventBatchLimit: BATCHES, relayEventLimit: EVENTS } });
      const admin = await t.user(uniq('admin'), 'admin');
      adminToken = () => tokenFor(t, admin);
    });
    const at = () => t.clock.now().toISOString();
    const fails = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ type: 'auth_fail', at: at(), reason: `${tag} ${i}` }));
    /** Events as small as the schema allows: 1,000 of them fit the body limit. */
    const bare = (n: number) => Array.from({ length: n }, () => ({ type: 'auth_fail', at: at() }));
    const send = (node: TestNode, events: unknown[]) => t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events } });
    const audited = async (node: TestNode) => {
      const r = await t.call('GET', `/v1/audit?limit=1000&actor=${node.id}&type=relay.auth_fail`, { token: await adminToken() });
      assertOk(r);
      return (r.body.events as unknown[]).length;
    };
    const assertLimited = (r: { status: number; body: { code?: string }; headers: Headers }) => {
      assert.equal(r.status, 429);
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(r.body.code, 'RATE_LIMITED');
      const retryAfter = Number(r.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${r.headers.get('retry-after')}`);
    };
    /** Starts the clock at a window's start, so a test's requests share one window. */
    const windowStart = () => t.clock.advance(60_000 - (t.clock.now().getTime() % 60_000));

    it('batches sent back to back past the bound are refused (429, Retry-After) and not recorded; other relays are not', async () => {
      windowStart();
      const hostile = await enrollNode(t, await adminToken());
      const other = await enrollNode(t, await adminToken());
      for (let i = 0; i < BATCHES; i++) assert.equal((await send(hostile, fails(1, `ok${i}`))).status, 202);
      for (let i = 0; i < 3; i++) assertLimited(await send(hostile, fails(1, `over${i}`)));
      assert.equal(await audited(hostile), BATCHES, 'only the batches within the bound are recorded');
      assert.equal((await send(other, fails(1, 'other'))).status, 202, 'the bound is per relay');
      t.clock.advance(60_000);
      assert.equal((await send(hostile, fails(1, 'next'))).status, 202, 'the next window takes batches again');
    });

    it('events past the bound are refused, however few batches carry them', async () => {
      windowStart();
      const hostile = await enrollNode(t, await adminToken());
      assert.equal((await send(hostile, bare(1000))).status, 202);
      assertLimited(await send(hostile, bare(1000)));
      assert.equal(await audited(hostile), 1000);
    });

    it('a concurrent burst is bounded the same', async () => {
      windowStart();
      const hostile = await enrollNode(t, await adminToken());
      const answers = await Promise.all(Array.from({ length: 3 * BATCHES }, (_, i) => send(hostile, fails(1, `burst${i}`))));
      assert.equal(answers.filter((r) => r.status === 202).length, BATCHES);
      for (const r of answers.filter((a) => a.status !== 202)) assertLimited(r);
      assert.equal(await audited(hostile), BATCHES);
    });

    it("the relay's reporter holds its events on a 429 until Retry-After, then delivers them all", async () => {
      windowStart();
      const node = await enrollNode(t, await adminToken());
      const client = clientOf(t, node);
      const logger = recordingLogger();
      // Batches of 2 KiB: about 20 events each, so 400 events are more batches than the bound.
      const reporter = new EventReporter({ client, logger, maxQueue: 10_000, intervalMs: 1000, maxBatchBytes: 2048, now: () => t.clock.now().getTime() });
      for (const e of fails(400, 'held')) reporter.push(e as ConnectionEvent);
      await reporter.flush();
      assert.equal(client.requests, BATCHES + 1);
      assert.equal(reporter.throttled, 1);
      assert.equal(reporter.dropped, 0);
      assert.ok(reporter.queued > 0);
      assert.equal(logger.warnings.length, 1);
      assert.match(logger.warnings[0]!.msg, /rate-limiting/);
      await reporter.flush();
      assert.equal(client.requests, BATCHES + 1, 'nothing sent before Retry-After');
      t.clock.advance(60_000);
      await reporter.flush();
      assert.equal(reporter.queued, 0);
      assert.equal(reporter.dropped, 0);
      assert.equal(reporter.sent, 400);
      assert.equal(await audited(node), 400);
    });
  });

  describe(`relay event batch bound, default settings (${name})`, { skip: makeApp.unavailable }, () => {
    it("an honest relay's reporter never meets it: a backlog, then a flush a second for two minutes", async () => {
      const t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const node = await enrollNode(t, await tokenFor(t, admin));
      const client = clientOf(t, node);
      const reporter = new EventReporter({ client, logger: recordingLogger(), maxQueue: 10_000, intervalMs: 1000, now: () => t.clock.now().getTime() });
      const event = (i: number): ConnectionEvent => ({ type: 'auth_fail', at: t.clock.now().toISOString(), remote: '198.51.100.7:50000', reason: `attempt ${i}` });
      let pushed = 0;
      // What queued while the control plane was away, sent in one flush (batches back to back).
      for (; pushed < 3000; pushed++) reporter.push(event(pushed));
      for (let tick = 0; tick < 120; tick++) {
        for (let i = 0; i < 5; i++) reporter.push(event(pushed++));
        await reporter.flush();
        t.clock.advance(1000);
      }
      assert.equal(reporter.throttled, 0);
      assert.equal(reporter.dropped, 0);
      assert.equal(reporter.queued, 0);
      assert.equal(reporter.sent, pushed);
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
