/**
 * Abandoned console sessions are ended by a sweep beside the history prune (auth/idle-sessions.ts),
 * not only when their refresh token comes back: revoked, and `auth.session_idle` audited once per
 * session however many replicas sweep at once and whether or not the token is presented too. A
 * console session in use, and a CLI session, are not ended. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { and, eq, isNull, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { enrollNode, heartbeat, uniq, type TestNode } from '../testing/fixtures.js';
import { auditEvents, refreshTokens } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';
import { CONSOLE_CLIENT_ID } from './sessions.js';
import { endIdleConsoleSessions, IDLE_SWEEP_EVERY_MS } from './idle-sessions.js';

const PASSWORD = 'a password for idle sessions';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`abandoned console sessions are ended by a sweep (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let node: TestNode;
    before(async () => {
      t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      node = await enrollNode(t, admin.token);
    });

    /** A new user's login session: a console's (client_id tunnel-console) or a CLI's. */
    async function login(console = true, user?: { id: string; name: string }) {
      const u = user ?? (await t.user(uniq('u'), 'member', PASSWORD));
      const res = await t.call('POST', '/v1/auth/token', {
        body: { grant_type: 'password', username: u.name, password: PASSWORD, ...(console ? { client_id: CONSOLE_CLIENT_ID } : {}) },
      });
      assert.equal(res.status, 200);
      const rt = res.body.refresh_token as string;
      const [row] = await t.deps.db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, hashSecret(rt))).limit(1);
      return { user: u, rt, id: row!.id, family: row!.familyId };
    }
    const refresh = (rt: string) => t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: rt } });
    const idleAudits = async (family: string) =>
      (await t.deps.db.select().from(auditEvents).where(and(eq(auditEvents.type, 'auth.session_idle'), eq(auditEvents.subject, family)))).length;
    const live = async (family: string) =>
      (await t.deps.db.select().from(refreshTokens).where(and(eq(refreshTokens.familyId, family), isNull(refreshTokens.revokedAt)))).length;
    /** The idle deadline of a token: the timeout, and the life of the access token issued with it. */
    const idleSeconds = () => t.deps.settings.consoleIdleTimeout + t.deps.settings.accessTokenTtl;
    /**
     * Dates the live refresh tokens of `sessions` `seconds` before the database's clock, which
     * judges idleness (a replica's own clock may be hours off): as if issued that long ago.
     */
    async function issuedAgo(seconds: number, ...sessions: { family: string }[]) {
      for (const s of sessions) {
        await t.deps.db.execute(
          sql`update refresh_tokens set created_at = now() - ${seconds}::integer * interval '1 second'
              where family_id = ${s.family} and revoked_at is null and rotated_at is null`,
        );
      }
    }

    it("a relay's heartbeat ends a console session abandoned past the idle timeout, audited once; one in use and a CLI session live on", async () => {
      const abandoned = await login();
      const inUse = await login();
      const cli = await login(false);
      await issuedAgo(idleSeconds() - 60, inUse);
      const used = await refresh(inUse.rt);
      assert.equal(used.status, 200);
      await issuedAgo(idleSeconds() + 60, abandoned, cli);
      t.clock.advance(IDLE_SWEEP_EVERY_MS);
      await heartbeat(t, node);
      assert.equal(await idleAudits(abandoned.family), 1, 'the abandoned session\'s end is audited');
      assert.equal(await live(abandoned.family), 0, 'its refresh tokens are revoked');
      assert.equal(await idleAudits(inUse.family), 0);
      assert.equal(await idleAudits(cli.family), 0);
      // The next turns, and the token presented at last: no second auth.session_idle.
      t.clock.advance(IDLE_SWEEP_EVERY_MS);
      await heartbeat(t, node);
      const late = await refresh(abandoned.rt);
      assert.equal(late.status, 400);
      assert.equal(late.body.code, 'INVALID_GRANT');
      assert.equal(await idleAudits(abandoned.family), 1, 'audited once');
      assert.equal((await refresh(used.body.refresh_token)).status, 200, 'the console session in use lives on');
      assert.equal((await refresh(cli.rt)).status, 200, 'the CLI session lives on');
    });

    it('two replicas sweeping and the token presented at once: the session is ended and audited once', async () => {
      const s = await login();
      await issuedAgo(idleSeconds() + 60, s);
      // Postgres: the user's row held, so all three reach the claim before any of them commits.
      const hold = name === 'postgres' ? await holdRows(t, sql`select 1 from users where id = ${s.user.id} for no key update`) : undefined;
      const waiting = hold ? await lockWaiters(t) : 0;
      const now = t.clock.now();
      let settled = 0;
      const done = () => settled++;
      const sweeps = [endIdleConsoleSessions(t.deps, now).finally(done), endIdleConsoleSessions(t.deps, now).finally(done)];
      const presented = refresh(s.rt).finally(done);
      if (hold) {
        await until('the sweeps and the refresh wait for the user row (or, unfixed, are done)', async () => settled + (await lockWaiters(t)) - waiting >= 3);
        await hold.release();
      }
      await Promise.all(sweeps);
      const res = await presented;
      assert.equal(res.status, 400);
      assert.equal(res.body.code, 'INVALID_GRANT');
      assert.equal(await idleAudits(s.family), 1, 'audited once');
      assert.equal(await live(s.family), 0);
    });

    // Postgres only (PGlite has one connection): another replica's sweep has claimed the token,
    // not yet committed, when the refresh that finds the session idle comes to end it.
    if (name === 'postgres') it('a refresh of an idle session another replica is ending does not audit its end again', async () => {
      const s = await login();
      await issuedAgo(idleSeconds() + 60, s);
      const hold = await holdRows(t, sql`update refresh_tokens set revoked_at = ${t.clock.now().toISOString()}::timestamptz where id = ${s.id}`);
      const waiting = await lockWaiters(t);
      let settled = false;
      const res = refresh(s.rt).finally(() => (settled = true));
      await until('the refresh waits for the claim (or is done)', async () => settled || (await lockWaiters(t)) >= waiting + 1);
      await hold.release();
      assert.equal((await res).status, 400);
      assert.equal(await idleAudits(s.family), 0, 'the refresh audited an end it did not make');
    });

    // Postgres only (PGlite has one connection): the token is rotated (the session used) while
    // the sweep waits for the user's row, as a refresh holds it.
    if (name === 'postgres') it('a session used while the sweep waits for its user is not ended', async () => {
      const s = await login();
      await issuedAgo(idleSeconds() + 60, s);
      const now = t.clock.now();
      const hold = await holdRows(
        t,
        sql`with u as (select 1 from users where id = ${s.user.id} for no key update)
            update refresh_tokens set rotated_at = ${now.toISOString()}::timestamptz where id = ${s.id} and exists (select 1 from u)`,
      );
      const waiting = await lockWaiters(t);
      let settled = false;
      const sweep = endIdleConsoleSessions(t.deps, now).finally(() => (settled = true));
      await until('the sweep waits for the user row', async () => settled || (await lockWaiters(t)) >= waiting + 1);
      await hold.release();
      assert.equal(await sweep, 0);
      assert.equal(await idleAudits(s.family), 0);
      assert.equal(await live(s.family), 1, 'the session is not ended');
    });

    it("a replica whose clock runs 13 hours ahead of the database's ends no console session in use, by its sweep or at a refresh", async () => {
      const swept = await login();
      const refreshed = await login();
      const ahead = 13 * 3600_000;
      t.clock.advance(ahead);
      try {
        assert.equal(await endIdleConsoleSessions(t.deps, t.clock.now()), 0, 'the sweep ended sessions in use');
        assert.equal(await live(swept.family), 1);
        assert.equal((await refresh(refreshed.rt)).status, 200, 'the refresh ended a session in use');
        assert.equal(await idleAudits(swept.family) + (await idleAudits(refreshed.family)), 0);
      } finally {
        t.clock.advance(-ahead);
      }
    });

    it("a session that signs in or refreshes through a replica 13 hours behind is not idle at once: its token's issue is the database's time", async () => {
      const behind = 13 * 3600_000;
      t.clock.advance(-behind);
      let signedIn: Awaited<ReturnType<typeof login>>, refreshed: { status: number; body: { refresh_token: string } };
      try {
        signedIn = await login();
        const other = await login();
        refreshed = await refresh(other.rt);
        assert.equal(refreshed.status, 200);
      } finally {
        t.clock.advance(behind);
      }
      assert.equal(await endIdleConsoleSessions(t.deps, t.clock.now()), 0, 'a sweep ended sessions just started');
      assert.equal(await live(signedIn.family), 1);
      assert.equal((await refresh(refreshed.body.refresh_token)).status, 200, 'a refresh found a session just used idle');
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
