/**
 * Expired leases and the feed entries of expired leases are deleted after their retention, in
 * bounded batches, from a relay's heartbeat (services/history-prune.ts); what is younger stays,
 * the feed's newest entry stays, relays keep reading the feed, and the audit log keeps every
 * lease's history. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { and, count, eq, inArray, like, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { databaseNow, enrollNode, heartbeat, issueLease, onlineExposure, uniq, type TestNode } from '../testing/fixtures.js';
import { dateBack, dateBackUntil } from '../testing/date-back.js';
import { auditEvents, deviceCodes, leases, refreshTokens, revocations } from '../db/schema/index.js';
import { audit, AUDIT_AHEAD_MAX_MS } from './audit.js';
import { BATCH, CREDENTIAL_RETENTION_MS, FEED_RETENTION_MS, LEASE_RETENTION_MS, PRUNE_EVERY_MS, pruneHistory, staleOpenConnections } from './history-prune.js';

const HOUR = 3600_000;
const KEEP_AUDIT = { auditRetentionDays: 0 };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`expired leases and feed entries are pruned (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let node: TestNode;
    let userId: string;

    before(async () => {
      t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      userId = admin.id;
      node = await enrollNode(t, admin.token);
    });

    /** `n` lease rows of this test (ids `${prefix}0`...) that expire at `expiresAt`, each revoked with a feed entry for `node`. */
    async function revokedLeases(prefix: string, n: number, expiresAt: Date): Promise<void> {
      const exp = expiresAt.toISOString();
      const issued = new Date(expiresAt.getTime() - HOUR).toISOString();
      await t.deps.db.execute(sql`insert into leases (id, kind, user_id, node_id, exposure, ssh_key, serial, not_before, expires_at, revoked_at, created_at)
        select ${prefix} || g::text, 'expose', ${userId}, ${node.id}, 'svc', 'SHA256:x', g::text, ${issued}::timestamptz, ${exp}::timestamptz, ${issued}::timestamptz, ${issued}::timestamptz
        from generate_series(0, ${n - 1}) g`);
      await t.deps.db.execute(sql`insert into revocations (lease_id, node_id, expires_at, created_at)
        select ${prefix} || g::text, ${node.id}, ${exp}::timestamptz, ${issued}::timestamptz from generate_series(0, ${n - 1}) g order by g`);
    }
    const leaseCount = async (prefix: string) => (await t.deps.db.select({ n: count() }).from(leases).where(like(leases.id, `${prefix}%`)))[0]!.n;
    const feedCount = async (prefix: string) => (await t.deps.db.select({ n: count() }).from(revocations).where(like(revocations.leaseId, `${prefix}%`)))[0]!.n;

    it('finds stale open connections with one anti-join, not a subplan per open connection', async () => {
      // The subplan read every live lease of the connection's relay for each open connection:
      // 4,000 open connections on one relay took 24 s of Postgres, 53 s of PGlite.
      const res = await t.deps.db.execute(sql`explain (format json) ${staleOpenConnections(t.deps.db)}`);
      const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as Record<string, unknown>[];
      const nodes: Record<string, unknown>[] = [];
      const walk = (n: unknown): void => {
        if (Array.isArray(n)) return n.forEach(walk);
        if (!n || typeof n !== 'object') return;
        nodes.push(n as Record<string, unknown>);
        Object.values(n).forEach(walk);
      };
      walk(rows.map((r) => Object.values(r)[0]));
      const subplans = nodes.filter((n) => 'Subplan Name' in n).map((n) => n['Subplan Name']);
      assert.deepEqual(subplans, [], 'subplans in the plan');
      assert.ok(nodes.some((n) => n['Join Type'] === 'Anti'), 'no anti-join in the plan');
    });

    it("a relay's heartbeat deletes leases expired longer than the retention and their feed entries; younger ones stay", async () => {
      t.clock.advance(PRUNE_EVERY_MS); // this replica's turn
      const now = await databaseNow(t); // what the retentions count from
      const old = uniq('lse_old');
      const recent = uniq('lse_recent'); // expired, but within the lease retention; its feed entries are past theirs
      const fresh = uniq('lse_fresh'); // expired within the feed's retention
      await revokedLeases(old, 3, new Date(now - LEASE_RETENTION_MS - HOUR));
      await revokedLeases(recent, 2, new Date(now - LEASE_RETENTION_MS + HOUR));
      await revokedLeases(fresh, 2, new Date(now - FEED_RETENTION_MS / 2));
      await heartbeat(t, node);
      assert.equal(await leaseCount(old), 0, 'leases expired longer ago than the retention');
      assert.equal(await leaseCount(recent), 2, 'leases expired within it');
      assert.equal(await leaseCount(fresh), 2);
      assert.equal(await feedCount(old), 0);
      assert.equal(await feedCount(recent), 0, 'feed entries of leases expired longer ago than the feed retention');
      assert.equal(await feedCount(fresh), 2, 'feed entries within it');
    });

    it('keeps the newest feed entry whatever its age, and the feed still answers from an old cursor', async () => {
      t.clock.advance(PRUNE_EVERY_MS);
      const now = await databaseNow(t);
      const ancient = uniq('lse_ancient');
      await revokedLeases(ancient, 2, new Date(now - 2 * LEASE_RETENTION_MS));
      const [top] = await t.deps.db.select({ seq: revocations.seq }).from(revocations).orderBy(sql`seq desc`).limit(1);
      await heartbeat(t, node);
      assert.equal(await feedCount(ancient), 1, 'the newest entry stays');
      const [still] = await t.deps.db.select().from(revocations).where(eq(revocations.seq, top!.seq));
      assert.ok(still, 'it is the one with the highest seq');
      const readFrom = await databaseNow(t);
      const feed = await t.call('GET', `/v1/nodes/self/revocations?after=0`, { token: node.token });
      assertOk(feed);
      assert.equal(feed.body.cursor, String(top!.seq), 'the cursor reaches the newest entry');
      // Entries of leases expired longer than the feed's retention ago by the database's clock are
      // not served (those expired less long ago are: the relay's clock decides, nodes.ts readFeed).
      const served = feed.body.revocations as { lease_id: string; exp: number }[];
      assert.deepEqual(served.filter((r) => r.lease_id.startsWith(ancient)), []);
      assert.ok(served.every((r) => (r.exp + 1) * 1000 > readFrom - FEED_RETENTION_MS), JSON.stringify(served));
    });

    // A replica whose clock runs two hours ahead (NTP broken on one machine) pays for a turn: by
    // its clock the leases expired 90 minutes ago, past the feed's retention; by the database's
    // (and the relays') they have 30 minutes left. Their feed entries must stay and be served:
    // a relay that never hears of a revocation accepts the lease until it expires.
    it("a replica whose clock runs hours ahead neither prunes nor withholds the feed entries of leases live by the database's clock", async () => {
      const live = uniq('lse_live');
      await revokedLeases(live, 2, new Date((await databaseNow(t)) + HOUR / 2));
      await revokedLeases(uniq('lse_newest'), 1, new Date(await databaseNow(t))); // the newest entry, which always stays
      t.clock.set(new Date(Math.max(t.clock.now().getTime() + PRUNE_EVERY_MS, (await databaseNow(t)) + 2 * HOUR)));
      const turn = await pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT);
      assert.ok(turn, 'a turn ran');
      assert.equal(await feedCount(live), 2, 'the feed entries of live leases stay');
      const feed = await t.call('GET', '/v1/nodes/self/revocations?after=0', { token: node.token });
      assertOk(feed);
      const served = (feed.body.revocations as { lease_id: string }[]).map((r) => r.lease_id).filter((id) => id.startsWith(live));
      assert.deepEqual(served.sort(), [`${live}0`, `${live}1`]);
    });

    // A replica whose clock runs 40 days ahead (NTP broken on one machine; past a refresh token's
    // 30 days and the day it is kept) pays for a turn. By its clock a live lease, a live refresh
    // token and a pending device authorization expired weeks ago, past their retentions, a
    // connection just closed is past its week and every audit event past a 30-day retention; by
    // the database's clock none is. Deleted, the
    // lease's row is gone from GET /v1/leases and no revocation finds it (a removed grant would
    // not stop it), and the connection open under it is closed as stale.
    it("a replica whose clock runs weeks ahead prunes no lease, credential, connection or audit event that is live or young by the database's clock; once old by it they go", async () => {
      const admin = await t.user(uniq('admin'), 'admin');
      const exposure = await onlineExposure(t, node, admin.token, admin.token, []);
      const { lease } = await issueLease(t, admin.token, { kind: 'expose', exposure });
      const { lease: bare } = await issueLease(t, admin.token, { kind: 'expose', exposure }); // no connection under it
      const password = 'a password for a replica ahead';
      const u = await t.user(uniq('ahead'), 'member', password);
      assertOk(await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: u.name, password } }));
      const res = await t.call('POST', '/v1/auth/device', { body: { client_id: 'tunnel-cli' } });
      assertOk(res);
      const [code] = await t.deps.db.select({ id: deviceCodes.id }).from(deviceCodes).where(eq(deviceCodes.userCode, res.body.user_code as string));
      const [open, closed] = [uniq('ses_open'), uniq('ses_closed')];
      await t.deps.db.execute(sql`insert into connections (node_id, session_id, lease_id, opened_at, closed_at)
        values (${node.id}, ${open}, ${lease.id}, now(), null), (${node.id}, ${closed}, ${lease.id}, now(), now())`);
      const leaseRows = async () => (await t.deps.db.select({ n: count() }).from(leases).where(inArray(leases.id, [lease.id, bare.id])))[0]!.n;
      const tokenRows = async () => (await t.deps.db.select({ n: count() }).from(refreshTokens).where(eq(refreshTokens.userId, u.id)))[0]!.n;
      const codeRow = async () => (await t.deps.db.select({ n: count() }).from(deviceCodes).where(eq(deviceCodes.id, code!.id)))[0]!.n;
      const connection = async (id: string) => {
        const r = await t.deps.db.execute(sql`select closed_at is null as open from connections where session_id = ${id}`);
        return ((Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as { open: boolean }[]).map((c) => (c.open ? 'open' : 'closed'));
      };
      const relayEvent = async () => {
        // A relay's events go through this replica too: its batch prunes closed connections (connections.ts).
        const r = await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: [{ type: 'auth_fail', at: t.clock.now().toISOString() }] } });
        assert.equal(r.status, 202);
      };

      const issued = async () => (await t.deps.db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.subject, lease.id)))[0]!.n;
      assert.equal(await issued(), 1);

      // With a 30-day audit retention: by the database's clock no event is that old.
      const RETAIN_AUDIT = { auditRetentionDays: 30 };
      t.clock.set(new Date(Math.max(t.clock.now().getTime(), await databaseNow(t)) + 40 * 86400_000));
      const ahead = await pruneHistory(t.deps.db, t.clock.now(), RETAIN_AUDIT);
      assert.equal(ahead?.audit, 0, 'no audit event is past its retention');
      await relayEvent();
      assert.equal(await leaseRows(), 2, 'the live leases stay');
      assert.equal(await tokenRows(), 1, 'the live refresh token stays');
      assert.equal(await codeRow(), 1, 'the pending device authorization stays');
      assert.deepEqual(await connection(open), ['open'], 'the connection under the live lease stays open');
      assert.deepEqual(await connection(closed), ['closed'], 'the connection closed just now stays');
      assert.equal(await issued(), 1, "the lease's audit event stays");

      // Old by the database's clock: they go.
      await dateBackUntil(t, 'leases', sql`id in (${lease.id}, ${bare.id})`, 'expires_at', LEASE_RETENTION_MS + HOUR);
      await dateBackUntil(t, 'refresh_tokens', sql`user_id = ${u.id}`, 'expires_at', CREDENTIAL_RETENTION_MS + HOUR);
      await dateBackUntil(t, 'device_codes', sql`id = ${code!.id}`, 'expires_at', CREDENTIAL_RETENTION_MS + HOUR);
      await dateBackUntil(t, 'connections', sql`session_id in (${open}, ${closed})`, 'opened_at', LEASE_RETENTION_MS + HOUR);
      t.clock.advance(PRUNE_EVERY_MS);
      const turn = await pruneHistory(t.deps.db, t.clock.now(), RETAIN_AUDIT);
      assert.ok(turn && turn.staleConnections >= 1 && turn.leases >= 2 && turn.refreshTokens >= 1 && turn.deviceCodes >= 1, JSON.stringify(turn));
      assert.deepEqual(await connection(open), ['closed'], 'the connection whose lease expired long ago is closed');
      assert.equal(await leaseRows(), 0);
      assert.equal(await tokenRows(), 0);
      assert.equal(await codeRow(), 0);
      assert.equal(await issued(), 1, "the lease's audit event stays as long as the audit log keeps its events");
      await relayEvent();
      assert.deepEqual(await connection(closed), [], 'the connection closed over the retention ago is pruned');
    });

    it('deletes at most BATCH rows of each table per turn and one turn per PRUNE_EVERY_MS; a backlog drains over the next turns', async () => {
      t.clock.advance(PRUNE_EVERY_MS);
      const now = t.clock.now();
      const backlog = uniq('lse_backlog');
      await revokedLeases(backlog, BATCH + 10, new Date((await databaseNow(t)) - 2 * LEASE_RETENTION_MS));
      const first = await pruneHistory(t.deps.db, now, KEEP_AUDIT);
      assert.equal(first?.leases, BATCH);
      assert.equal(first?.revocations, BATCH);
      assert.equal(await pruneHistory(t.deps.db, new Date(now.getTime() + PRUNE_EVERY_MS - 1), KEEP_AUDIT), undefined, 'not again within PRUNE_EVERY_MS');
      t.clock.advance(PRUNE_EVERY_MS);
      const second = await pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT);
      assert.ok(second && second.leases >= 10 && second.leases < BATCH, JSON.stringify(second));
      assert.equal(await leaseCount(backlog), 0);
      assert.ok((await feedCount(backlog)) <= 1, 'all but possibly the newest feed entry');
    });

    it('a failing delete is logged and does not fail the heartbeat; the rows go on a later turn', async () => {
      t.clock.advance(PRUNE_EVERY_MS);
      const now = await databaseNow(t);
      const kept = uniq('lse_kept');
      await revokedLeases(kept, 1, new Date(now - 2 * LEASE_RETENTION_MS));
      await t.deps.db.execute(sql`create or replace function prune_test_refuse() returns trigger language plpgsql as $$ begin raise exception 'refused by test'; end $$`);
      await t.deps.db.execute(sql`create trigger prune_test_refuse before delete on leases for each row execute function prune_test_refuse()`);
      const errors: unknown[] = [];
      try {
        const logger = { ...t.deps.logger, error: (msg: string, fields?: Record<string, unknown>) => errors.push([msg, String((fields?.err as Error | undefined)?.cause ?? fields?.err)]) };
        assert.equal(await pruneHistory(t.deps.db, t.clock.now(), { auditRetentionDays: 0, logger }), undefined);
        assert.equal(errors.length, 1);
        assert.match(String((errors[0] as unknown[])[1]), /refused by test/);
        t.clock.advance(PRUNE_EVERY_MS);
        await heartbeat(t, node); // answers 200 although its prune fails
        assert.equal(await leaseCount(kept), 1);
      } finally {
        await t.deps.db.execute(sql`drop trigger prune_test_refuse on leases`);
      }
      t.clock.advance(PRUNE_EVERY_MS);
      await heartbeat(t, node);
      assert.equal(await leaseCount(kept), 0);
    });

    it('prunes a lease issued through the API once it expired long enough, and leaves its audit events', async () => {
      const admin = await t.user(uniq('admin'), 'admin');
      const exposure = await onlineExposure(t, node, admin.token, admin.token, []);
      const { lease } = await issueLease(t, admin.token, { kind: 'expose', exposure });
      // Expired longer than the retention ago by the database's clock, which decides.
      await dateBackUntil(t, 'leases', sql`id = ${lease.id}`, 'expires_at', LEASE_RETENTION_MS + PRUNE_EVERY_MS);
      t.clock.advance(PRUNE_EVERY_MS);
      await heartbeat(t, node);
      assert.deepEqual(await t.deps.db.select().from(leases).where(eq(leases.id, lease.id)), []);
      const events = await t.deps.db.select({ type: auditEvents.type }).from(auditEvents).where(eq(auditEvents.subject, lease.id));
      assert.ok(events.some((e) => e.type === 'lease.issued'), JSON.stringify(events));
    });

    it('deletes audit events older than the audit retention from the front of the log (and says so in the log), none with 0', async () => {
      t.clock.advance(PRUNE_EVERY_MS);
      const now = t.clock.now();
      // A turn 31 days on, by the database's clock, which decides: this suite's earlier events,
      // some dated by this replica's clock (weeks ahead by now, up to the hour past the database's
      // clock that audit dates may be), are dated back by its lead and 31 days, past a 30-day
      // retention too.
      const dbNow = await databaseNow(t);
      await dateBack(t, 'audit_events', sql`true`, Math.max(0, now.getTime() - dbNow) + 31 * 86400_000);
      const tag = uniq('pruned-subject');
      const at = (daysAgo: number) => new Date(dbNow - daysAgo * 86400_000);
      await t.deps.db.insert(auditEvents).values([
        { at: at(31), type: 'user.created', subject: tag, data: { age: 31 } },
        { at: at(29), type: 'user.created', subject: tag, data: { age: 29 } },
        { at: at(40), type: 'user.created', subject: tag, data: { age: 40 } },
      ]);
      const ages = async () => (await t.deps.db.select({ data: auditEvents.data }).from(auditEvents).where(eq(auditEvents.subject, tag))).map((r) => r.data.age).sort();
      assert.equal((await pruneHistory(t.deps.db, now, { auditRetentionDays: 0 }))?.audit, 0);
      assert.deepEqual(await ages(), [29, 31, 40], '0 keeps them for good');
      t.clock.advance(PRUNE_EVERY_MS);
      const turn = await pruneHistory(t.deps.db, t.clock.now(), { auditRetentionDays: 30 });
      assert.ok(turn && turn.audit >= 2, JSON.stringify(turn));
      // The 40-day-old event comes after the 29-day-old one in the log: it waits for it.
      assert.deepEqual(await ages(), [29, 40]);
      const [note] = await t.deps.db.select().from(auditEvents).where(eq(auditEvents.type, 'audit.pruned')).orderBy(sql`seq desc`).limit(1);
      assert.equal(note?.data.events, turn.audit);
      assert.equal(note?.data.retention_days, 30);
    });

    it("a lease issued on a replica whose clock is years ahead has its lease.issued event dated no later than the database's clock allows", async () => {
      const before = t.clock.now();
      try {
        t.clock.set(new Date(Math.max(before.getTime(), await databaseNow(t)) + 10 * 365 * 86400_000));
        const admin = await t.user(uniq('admin'), 'admin');
        const exposure = await onlineExposure(t, node, admin.token, admin.token, []);
        const { lease } = await issueLease(t, admin.token, { kind: 'expose', exposure });
        const [issued] = await t.deps.db.select({ at: auditEvents.at }).from(auditEvents).where(and(eq(auditEvents.subject, lease.id), eq(auditEvents.type, 'lease.issued')));
        const limit = (await databaseNow(t)) + AUDIT_AHEAD_MAX_MS;
        assert.ok(issued && issued.at.getTime() <= limit, `dated ${issued?.at.toISOString()}, past ${new Date(limit).toISOString()}`);
      } finally {
        t.clock.set(before);
      }
    });

    it('an event written by a replica whose clock is years ahead does not hold back the pruning of those after it', async () => {
      const tag = uniq('ahead-subject');
      // The database's clock is the real one; this suite's clock may be ahead of it by now.
      const real = Date.now();
      await audit(t.deps.db, new Date(real + 10 * 365 * 86400_000), { type: 'user.created', subject: tag, data: { age: 'ahead' } });
      await audit(t.deps.db, new Date(real), { type: 'user.created', subject: tag, data: { age: 'now' } });
      const [ahead] = await t.deps.db.select({ at: auditEvents.at }).from(auditEvents).where(sql`${auditEvents.subject} = ${tag} and data->>'age' = 'ahead'`);
      assert.ok(ahead!.at.getTime() <= Date.now() + AUDIT_AHEAD_MAX_MS, `dated ${ahead!.at.toISOString()}`);
      // 40 days on, with a 30-day retention: both are past it (the first by its date as written).
      // The database's clock decides: the log is dated back 40 days and this replica's lead on it.
      await dateBack(t, 'audit_events', sql`true`, Math.max(0, t.clock.now().getTime() - real) + 40 * 86400_000);
      const left = async () => (await t.deps.db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.subject, tag)))[0]!.n;
      for (let turn = 0; turn < 10 && (await left()) > 0; turn++) {
        t.clock.advance(PRUNE_EVERY_MS);
        const pruned = await pruneHistory(t.deps.db, t.clock.now(), { auditRetentionDays: 30 });
        if (!pruned?.audit) break;
      }
      assert.equal(await left(), 0, 'the events after the one dated ahead are pruned');
    });

    it("deletes refresh tokens and device authorizations a day after they expired; a session's newest token and younger rows stay", async () => {
      // Each refresh wrote a row and each POST /v1/auth/device another, and none was ever deleted.
      const password = 'a password for pruned logins';
      const u = await t.user(uniq('cli'), 'member', password);
      const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: u.name, password } });
      assertOk(login);
      const refresh = (rt: string) => t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: rt } });
      const rows = async () => (await t.deps.db.select({ n: count() }).from(refreshTokens).where(eq(refreshTokens.userId, u.id)))[0]!.n;
      const device = async () => {
        const res = await t.call('POST', '/v1/auth/device', { body: { client_id: 'tunnel-cli' } });
        assertOk(res);
        const [row] = await t.deps.db.select({ id: deviceCodes.id }).from(deviceCodes).where(eq(deviceCodes.userCode, res.body.user_code as string));
        return row!.id;
      };
      const deviceLeft = async (id: string) => (await t.deps.db.select({ n: count() }).from(deviceCodes).where(eq(deviceCodes.id, id)))[0]!.n;
      const ttl = t.deps.settings.refreshTokenTtl * 1000;
      const oldDevice = await device();
      // Just before the first token's end: rotated, its successor lives a full ttl from now.
      t.clock.advance(ttl - 86400_000);
      const rotated = await refresh(login.body.refresh_token as string);
      assertOk(rotated);
      assert.equal(await rows(), 2);
      // Half a day after the rotated token expired: within the retention, it stays.
      t.clock.advance(86400_000 + 43200_000);
      const youngDevice = await device();
      // The database's clock decides, so the rows are dated as old by it: the rotated token
      // expired half a day ago, the first device authorization a month ago.
      const rotatedRow = sql`user_id = ${u.id} and rotated_at is not null`;
      await dateBackUntil(t, 'refresh_tokens', rotatedRow, 'expires_at', 43200_000);
      await dateBackUntil(t, 'device_codes', sql`id = ${oldDevice}`, 'expires_at', 30 * 86400_000);
      await pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT);
      assert.equal(await rows(), 2, 'a token expired less than a day ago stays');
      assert.equal(await deviceLeft(oldDevice), 0, 'a device authorization expired a month ago goes');
      // A day and a half after it expired (and the younger device authorization a day and an hour
      // after it was made): both go; the session's newest token stays and works.
      t.clock.advance(86400_000 + 3600_000);
      await dateBack(t, 'refresh_tokens', rotatedRow, 86400_000 + 3600_000);
      await dateBackUntil(t, 'device_codes', sql`id = ${youngDevice}`, 'created_at', 86400_000 + 3600_000);
      const turn = await pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT);
      assert.ok(turn && turn.refreshTokens >= 1 && turn.deviceCodes >= 1, JSON.stringify(turn));
      assert.equal(await rows(), 1, "the rotated token's row went");
      assert.equal(await deviceLeft(youngDevice), 0);
      assertOk(await refresh(rotated.body.refresh_token as string));
      const gone = await refresh(login.body.refresh_token as string);
      assert.equal(gone.status, 400);
      assert.equal(gone.body.error, 'invalid_grant');
    });

    // Postgres only: PGlite has one connection, so no other transaction can hold a row.
    if (name !== 'PGlite') it('does not wait for a refresh token another transaction holds (a session being ended): it skips it', async () => {
      // A session's end updates every unrevoked row of its family, expired ones too, in its own
      // order: a prune waiting on one of them while holding others deadlocked with it.
      const u = await t.user(uniq('held'), 'member');
      // Expired by the database's clock, which decides.
      const expired = new Date((await databaseNow(t)) - 2 * 86400_000);
      const ids = [uniq('rt_held'), uniq('rt_free')];
      for (const id of ids) {
        await t.deps.db.insert(refreshTokens).values({ id, familyId: uniq('fam'), userId: u.id, tokenHash: uniq('h'), createdAt: expired, expiresAt: expired });
      }
      const held = await holdRows(t, sql`select id from refresh_tokens where id = ${ids[0]} for update`);
      t.clock.advance(PRUNE_EVERY_MS);
      let settled = false;
      const turn = pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT).finally(() => (settled = true));
      try {
        await until('the prune finished or waits for a lock', async () => settled || (await lockWaiters(t)) > 0);
        assert.ok(settled, 'the prune waited for the held row');
      } finally {
        await held.release();
      }
      assert.ok(await turn, 'a turn ran');
      const left = await t.deps.db.select({ id: refreshTokens.id }).from(refreshTokens).where(inArray(refreshTokens.id, ids));
      assert.deepEqual(left.map((r) => r.id), [ids[0]], 'the held row stays for a later turn; the other went');
    });

    // Postgres only, as above. A revocation holds its lease row, a relay's conn_close its
    // connection's: the relay's heartbeat that runs the turn waited behind them.
    if (name !== 'PGlite') it('does not wait for a lease, feed entry or open connection another transaction holds: it skips them', async () => {
      t.clock.advance(PRUNE_EVERY_MS);
      // Leases and feed entries expire by the database's clock, which this suite's clock is weeks ahead of by now.
      const now = await databaseNow(t);
      const prefix = uniq('lse_held');
      await revokedLeases(prefix, 2, new Date(now - LEASE_RETENTION_MS - HOUR));
      await revokedLeases(uniq('lse_newest'), 1, new Date(now)); // the newest feed entry, which always stays
      const sessions = [uniq('ses_held'), uniq('ses_free')];
      // Open under a lease that never existed: stale at once (names no lease of its relay).
      for (const s of sessions) await t.deps.db.execute(sql`insert into connections (node_id, session_id, lease_id, opened_at) values (${node.id}, ${s}, ${uniq('lse_none')}, ${new Date(now - HOUR).toISOString()}::timestamptz)`);
      const holds = [
        await holdRows(t, sql`select id from leases where id = ${prefix + '0'} for update`),
        await holdRows(t, sql`select seq from revocations where lease_id = ${prefix + '0'} for update`),
        await holdRows(t, sql`select session_id from connections where session_id = ${sessions[0]} for update`),
      ];
      let settled = false;
      const turn = pruneHistory(t.deps.db, t.clock.now(), KEEP_AUDIT).finally(() => (settled = true));
      try {
        await until('the prune finished or waits for a lock', async () => settled || (await lockWaiters(t)) > 0);
        assert.ok(settled, 'the prune waited for a held row');
      } finally {
        for (const h of holds) await h.release();
      }
      const done = await turn;
      assert.ok(done, 'a turn ran');
      assert.equal(await leaseCount(prefix), 1, 'the held lease stays for a later turn; the other went');
      assert.equal(await feedCount(prefix), 1, 'the held feed entry stays; the other went');
      const open = await t.deps.db.execute(sql`select session_id from connections where closed_at is null and session_id in (${sessions[0]}, ${sessions[1]})`);
      const rows = (Array.isArray(open) ? open : (open as { rows: unknown[] }).rows) as { session_id: string }[];
      assert.deepEqual(rows.map((r) => r.session_id), [sessions[0]], 'the held connection stays open for a later turn; the other was closed');
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
