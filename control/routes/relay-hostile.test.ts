/**
 * A relay node whose host is compromised: it holds a valid node credential and sends whatever it
 * likes to /v1/nodes/self/*. What it sends must not reach other relays' exposures, nor cost the
 * control plane work or rows out of proportion to what it holds. Runs on PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { leases } from '../db/schema/index.js';
import { setOnline } from '../services/exposures.js';
import { CLOSED_RETENTION_MS } from '../services/connections.js';
import { recordEvents, RELAY_CLOCK_AHEAD_MAX_MS } from '../services/nodes.js';
import { PRUNE_EVERY_MS, STALE_OPEN_GRACE_MS } from '../services/history-prune.js';
import type { TestApp } from '../testing/test-app.js';
import { recordingLogger } from '../testing/recording-logger.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import { databaseNow, enrollNode, exposeOn, heartbeat, issueLease, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { dateBack } from '../testing/date-back.js';

type User = { id: string; name: string; token: string };

/** `db` with its calls of `method` counted, in transactions too (every other method passed through). */
function counting(db: Db, method: 'update' | 'insert'): { db: Db; calls: () => number } {
  let n = 0;
  const wrap = <T extends object>(inner: T): T =>
    new Proxy(inner, {
      get(target, prop) {
        const v: unknown = Reflect.get(target, prop);
        if (typeof v !== 'function') return v;
        const f = v as (...a: unknown[]) => unknown;
        if (prop === method) {
          return (...args: unknown[]) => {
            n += 1;
            return f.apply(target, args);
          };
        }
        if (prop === 'transaction') {
          return (fn: (tx: object) => unknown, ...rest: unknown[]) => f.call(target, (tx: object) => fn(wrap(tx)), ...rest);
        }
        return f.bind(target);
      },
    });
  return { db: wrap(db), calls: () => n };
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`a hostile relay (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User;
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
    });
    const adminToken = () => tokenFor(t, admin);
    const exposure = async (n: string) => {
      const r = await t.call('GET', `/v1/exposures/${n}`, { token: await adminToken() });
      assertOk(r);
      return r.body as { online: boolean; node: string | null; port: number | null };
    };
    const events = (node: TestNode, list: unknown[]) => t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: list } });
    /**
     * Runs `fn` (a heartbeat or a batch of events: the prunes they run) with `node`'s rows of
     * `tables` dated as far before the database's clock as they are before this replica's, which
     * these tests move on: the prunes' cutoffs go by the database's clock. Dated as they were
     * again after; `fn` must write no date to those tables (a prune only deletes leases).
     */
    const byReplicaClock = async (node: TestNode, tables: ('leases' | 'connections')[], fn: () => Promise<unknown>) => {
      const lead = t.clock.now().getTime() - (await databaseNow(t));
      const mine = sql`node_id = ${node.id}`;
      for (const table of tables) await dateBack(t, table, mine, lead);
      try {
        await fn();
      } finally {
        for (const table of tables) await dateBack(t, table, mine, -lead);
      }
    };

    it('a heartbeat naming a held exposure thousands of times writes it once', async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('dup-');
      await putExposure(t, owner.token, name);
      await exposeOn(t, await adminToken(), node, owner.token, name);
      const counted = counting(t.deps.db, 'update');
      const held = Array.from({ length: 2000 }, (_, i) => ({ name, port: 1000 + i }));
      await setOnline({ ...t.deps, db: counted.db }, { kind: 'node', nodeId: node.id, name: node.name }, held, { complete: true });
      // One update for the exposure (with the last port listed) and one for the rest going offline.
      assert.equal(counted.calls(), 2);
      const e = await exposure(name);
      assert.deepEqual([e.online, e.node, e.port], [true, node.name, 2999]);
    });

    it('claims of exposures it holds no lease for are logged on one line per report', async () => {
      const node = await enrollNode(t, await adminToken());
      const logger = recordingLogger();
      const names = Array.from({ length: 2000 }, (_, i) => ({ name: `nolease-${i}`, port: 22 }));
      await setOnline({ ...t.deps, logger }, { kind: 'node', nodeId: node.id, name: node.name }, names, { complete: true });
      assert.equal(logger.warnings.length, 1);
      assert.equal(logger.warnings[0]!.fields?.refused, 2000);
      assert.equal((logger.warnings[0]!.fields?.exposures as unknown[]).length, 10);
    });

    it("a batch's exposure_online events are decided once, not once per event", async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const held = uniq('batch-');
      await putExposure(t, owner.token, held);
      await exposeOn(t, await adminToken(), node, owner.token, held);
      const logger = recordingLogger();
      const at = t.clock.now().toISOString();
      const online = (exposure: string, port: number) => ({ type: 'exposure_online' as const, at, exposure, port });
      const batch = [...Array.from({ length: 500 }, (_, i) => online('not-its-own', i + 1)), online(held, 2022)];
      await recordEvents({ ...t.deps, logger }, { kind: 'node', nodeId: node.id, name: node.name }, batch);
      assert.equal(logger.warnings.length, 1, 'one decision, one line');
      assert.equal(logger.warnings[0]!.fields?.refused, 1);
      const e = await exposure(held);
      assert.deepEqual([e.online, e.node, e.port], [true, node.name, 2022]);
    });

    it("a batch's audit events are written in one statement", async () => {
      const node = await enrollNode(t, await adminToken());
      const counted = counting(t.deps.db, 'insert');
      const at = t.clock.now().toISOString();
      const batch = Array.from({ length: 1000 }, (_, i) => ({ type: 'auth_fail' as const, at, reason: `try ${i}` }));
      await recordEvents({ ...t.deps, db: counted.db }, { kind: 'node', nodeId: node.id, name: node.name }, batch);
      assert.equal(counted.calls(), 1);
      const audit = await t.call('GET', `/v1/audit?limit=1000&actor=${node.id}&type=relay.auth_fail&order=asc`, { token: await adminToken() });
      assertOk(audit);
      assert.deepEqual(
        audit.body.events.map((e: { data: { reason: string } }) => e.data.reason),
        batch.map((e) => e.reason),
        'every event, in the order sent',
      );
    });

    it('an older expose lease cannot take the exposure back from the relay X moved to', async () => {
      const a = await enrollNode(t, await adminToken());
      const b = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('move-');
      await putExposure(t, owner.token, name);
      await exposeOn(t, await adminToken(), a, owner.token, name);
      await heartbeat(t, a, [{ name, port: 22 }]);
      assert.equal((await exposure(name)).node, a.name);

      // The operator moves it to B; X takes a lease there and B reports it. A's lease is still active.
      t.clock.advance(1000);
      const onB = await exposeOn(t, await adminToken(), b, owner.token, name);
      await heartbeat(t, b, [{ name, port: 22 }]);
      assert.equal((await exposure(name)).node, b.name);

      await heartbeat(t, a, [{ name, port: 2222 }]);
      assert.equal((await exposure(name)).node, b.name, "A's heartbeat does not take it back");
      assert.equal((await events(a, [{ type: 'exposure_online', at: t.clock.now().toISOString(), exposure: name, port: 2222 }])).status, 202);
      const e = await exposure(name);
      assert.deepEqual([e.online, e.node, e.port], [true, b.name, 22], 'nor does its event');
      assert.equal((await events(a, [{ type: 'exposure_offline', at: t.clock.now().toISOString(), exposure: name }])).status, 202);
      assert.equal((await exposure(name)).online, true, 'nor can it take it offline');

      // B's lease revoked: A's is the newest active one again, and A may report X there.
      assertOk(await t.call('DELETE', `/v1/leases/${onB.lease.id}`, { token: await adminToken() }));
      await heartbeat(t, a, [{ name, port: 2222 }]);
      assert.equal((await exposure(name)).node, a.name);
    });

    it('a renewed lease on the same relay keeps the exposure there', async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('renew-');
      await putExposure(t, owner.token, name);
      await exposeOn(t, await adminToken(), node, owner.token, name);
      t.clock.advance(1000);
      await issueLease(t, await tokenFor(t, owner, 'member'), { kind: 'expose', exposure: name });
      await heartbeat(t, node, [{ name, port: 22 }]);
      assert.equal((await exposure(name)).node, node.name);
    });

    it("a cursor beyond the feed is moved back to this relay's last entry, not the feed's", async () => {
      const a = await enrollNode(t, await adminToken());
      const b = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('feed-');
      await putExposure(t, owner.token, name);
      const onB = await exposeOn(t, await adminToken(), b, owner.token, name);
      assertOk(await t.call('DELETE', `/v1/leases/${onB.lease.id}`, { token: await adminToken() }));
      const feed = (n: TestNode, after: string) => t.call('GET', `/v1/nodes/self/revocations?after=${after}`, { token: n.token });
      const ofB = await feed(b, '0');
      assert.equal(ofB.body.revocations.length, 1);
      assert.ok(Number(ofB.body.cursor) > 0);
      const res = await feed(a, '999999999999999');
      assertOk(res);
      assert.deepEqual(res.body, { cursor: '0', revocations: [] }, "A learns nothing of B's feed");
      assert.equal((await feed(b, '999999999999999')).body.cursor, ofB.body.cursor);
    });

    it('connections reported open are closed once they have no live lease of the relay, and then pruned', async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('open-');
      await putExposure(t, owner.token, name);
      const lease = await exposeOn(t, await adminToken(), node, owner.token, name);
      const at = t.clock.now().toISOString();
      const opened = Array.from({ length: 50 }, (_, i) => ({ type: 'conn_open', at, session_id: `made-up-${i}` }));
      assert.equal((await events(node, [...opened, { type: 'conn_open', at, session_id: 'real', lease_id: lease.lease.id }])).status, 202);
      const open = async () => {
        const res = await t.call('GET', `/v1/connections?state=open&node=${node.name}&limit=1000`, { token: await adminToken() });
        assertOk(res);
        return (res.body.connections as { session_id: string }[]).map((c) => c.session_id);
      };
      assert.equal((await open()).length, 51);
      t.clock.advance(PRUNE_EVERY_MS);
      await heartbeat(t, node);
      assert.deepEqual(await open(), ['real'], 'the ones under no lease of its own are closed');
      t.clock.advance(new Date(lease.lease.expires_at).getTime() - t.clock.now().getTime() + STALE_OPEN_GRACE_MS + PRUNE_EVERY_MS);
      await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
      assert.deepEqual(await open(), [], 'and the one whose lease expired over an hour ago');
      t.clock.advance(CLOSED_RETENTION_MS + PRUNE_EVERY_MS);
      await byReplicaClock(node, ['connections'], async () => {
        assert.equal((await events(node, [{ type: 'auth_fail', at: t.clock.now().toISOString() }])).status, 202);
      });
      const all = await t.call('GET', `/v1/connections?state=all&node=${node.name}&limit=1000`, { token: await adminToken() });
      assert.deepEqual(all.body.connections, []);
    });

    it('a connection whose lease is renewed in band stays open while the renewals go on, and is closed once they stop', async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('renew-');
      await putExposure(t, owner.token, name);
      const key = newClientKey();
      const first = await exposeOn(t, await adminToken(), node, owner.token, name);
      const renew = async () => issueLease(t, await tokenFor(t, owner), { kind: 'expose', exposure: name, public_key: key.line });
      const original = await renew();
      assert.ok(first.lease.id !== original.lease.id);
      assert.equal((await events(node, [{ type: 'conn_open', at: t.clock.now().toISOString(), session_id: 'long-lived', lease_id: original.lease.id }])).status, 202);
      const open = async () => {
        const res = await t.call('GET', `/v1/connections?state=open&node=${node.name}&limit=1000`, { token: await adminToken() });
        assertOk(res);
        return (res.body.connections as { session_id: string }[]).map((c) => c.session_id);
      };
      // The CLI renews before each lease expires, on the same connection (no event says so); a
      // lease for another key, and the first lease (another key), do not count.
      let last = original;
      const ttl = new Date(original.lease.expires_at).getTime() - t.clock.now().getTime();
      for (let i = 0; i < 4; i++) {
        t.clock.advance(ttl - 60_000);
        last = await renew();
        await renew_other();
        await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
        assert.deepEqual(await open(), ['long-lived'], `after renewal ${i + 1}`);
        assert.deepEqual(await liveness(), [true], `live after renewal ${i + 1}`);
      }
      t.clock.advance(new Date(last.lease.expires_at).getTime() - t.clock.now().getTime() + 1000);
      await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
      assert.deepEqual(await liveness(), [false], 'not live once its last renewal expired');
      t.clock.advance(STALE_OPEN_GRACE_MS + PRUNE_EVERY_MS);
      await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
      assert.deepEqual(await open(), [], 'closed once its last renewal expired over an hour ago');
      async function liveness() {
        const res = await t.call('GET', `/v1/connections?state=open&node=${node.name}&limit=1000`, { token: await adminToken() });
        assertOk(res);
        return (res.body.connections as { live: boolean }[]).map((c) => c.live);
      }
      async function renew_other() {
        await issueLease(t, await tokenFor(t, owner), { kind: 'expose', exposure: name });
      }
    });

    it('a connection renewed in band for longer than the lease retention stays open', async () => {
      const node = await enrollNode(t, await adminToken());
      const owner = await t.user(uniq('own'), 'member');
      const name = uniq('weeks-');
      await putExposure(t, owner.token, name);
      await exposeOn(t, await adminToken(), node, owner.token, name);
      const key = newClientKey();
      const renew = async () => issueLease(t, await tokenFor(t, owner), { kind: 'expose', exposure: name, public_key: key.line, ttl_seconds: 86400 });
      const original = await renew();
      assert.equal((await events(node, [{ type: 'conn_open', at: t.clock.now().toISOString(), session_id: 'weeks', lease_id: original.lease.id }])).status, 202);
      const open = async () => {
        const res = await t.call('GET', `/v1/connections?state=open&node=${node.name}&limit=1000`, { token: await adminToken() });
        assertOk(res);
        return (res.body.connections as { session_id: string }[]).map((c) => c.session_id);
      };
      // A day's lease renewed before it ends, for past the 7 days an expired lease row is kept.
      const ttl = new Date(original.lease.expires_at).getTime() - t.clock.now().getTime();
      let last = original;
      for (let day = 1; day * (ttl - 60_000) < CLOSED_RETENTION_MS + 3 * ttl; day++) {
        t.clock.advance(ttl - 60_000);
        last = await renew();
        await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
        assert.deepEqual(await open(), ['weeks'], `after renewal ${day}`);
      }
      t.clock.advance(new Date(last.lease.expires_at).getTime() - t.clock.now().getTime() + STALE_OPEN_GRACE_MS + PRUNE_EVERY_MS);
      await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
      assert.deepEqual(await open(), [], 'closed once its last renewal expired over an hour ago');
      t.clock.advance(CLOSED_RETENTION_MS + PRUNE_EVERY_MS);
      await byReplicaClock(node, ['leases'], () => heartbeat(t, node));
      const kept = await t.deps.db.select({ id: leases.id }).from(leases).where(eq(leases.id, original.lease.id));
      assert.deepEqual(kept, [], 'its lease row goes once the connection is closed');
    });

    it('times far in the future are recorded no later than the skew allowed, and are pruned', async () => {
      const node = await enrollNode(t, await adminToken());
      const far = '9999-12-31T00:00:00Z';
      const latest = () => t.clock.now().getTime() + RELAY_CLOCK_AHEAD_MAX_MS;
      const sent = latest();
      const session = uniq('future-');
      const r = await events(node, [
        { type: 'conn_open', at: far, session_id: `${session}-open` },
        { type: 'conn_close', at: far, session_id: `${session}-closed` },
      ]);
      assert.deepEqual(r.body, { accepted: 2, rejected: [] });
      const list = async () => {
        const res = await t.call('GET', `/v1/connections?state=all&node=${node.name}`, { token: await adminToken() });
        assertOk(res);
        return res.body.connections as { session_id: string; opened_at: string; closed_at: string | null }[];
      };
      const rows = await list();
      assert.equal(rows.length, 2);
      for (const c of rows) assert.ok(new Date(c.opened_at).getTime() <= sent, `opened_at ${c.opened_at}`);
      const audit = await t.call('GET', `/v1/audit?limit=10&actor=${node.id}&type=relay.`, { token: await adminToken() });
      assertOk(audit);
      assert.equal(audit.body.events.length, 2);
      for (const e of audit.body.events) {
        assert.ok(new Date(e.at).getTime() <= sent, `audit at ${e.at}`);
        assert.equal(e.data.at, far, 'the audit data keeps the time the relay sent');
      }

      // started_at in the future closes its open connections, no later than the skew allowed.
      t.clock.advance(1000);
      assertOk(
        await t.call('POST', '/v1/nodes/self/heartbeat', {
          token: node.token,
          body: { version: 't', native_crypto: true, egress_driver: 'off', connections: 0, exposures: [], started_at: far },
        }),
      );
      for (const c of await list()) assert.ok(c.closed_at && new Date(c.closed_at).getTime() <= latest(), `closed_at ${c.closed_at}`);

      // Closed connections go after their retention, these too.
      t.clock.advance(CLOSED_RETENTION_MS + 2 * RELAY_CLOCK_AHEAD_MAX_MS);
      await byReplicaClock(node, ['connections'], async () => {
        assert.equal((await events(node, [{ type: 'auth_fail', at: t.clock.now().toISOString() }])).status, 202);
      });
      assert.deepEqual(await list(), []);
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
