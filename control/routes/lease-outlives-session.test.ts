/**
 * A lease never outlives the login session it was issued through (found by h-attack): a refresh
 * token presented again after its rotation (the theft signal of auth/sessions.ts: "both the thief
 * and the victim must log in again") revokes the session's refresh-token family, its access
 * tokens, and now the leases those access tokens got ('session_revoked'), through the relays'
 * revocation feed; so does a logout ('logout'). The lease row records its session (`session_id`,
 * the access token's `sid`); leases of the user's other sessions stay. A session that ends on its
 * own, its refresh token expiring unused (a CLI login 30 days after its last refresh, a console
 * session 30 days after sign-in), revokes nothing: a lease through it is capped at that end (the
 * row's expiry, its certificate's valid-before and its token's exp), as the access token carries
 * it (`sxp`); before, a lease asked for 24 h an hour before a console session's end, or for
 * 31 days (the longest --max-lease-ttl) through a CLI login, outlived the session by as much.
 * Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { decodeJwt } from 'jose';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import type { TestApp } from '../testing/test-app.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, uniq } from '../testing/fixtures.js';
import { auditEvents, leases, refreshTokens } from '../db/schema/index.js';
import { ManualClock } from '../../shared/clock.js';
import { parseCertificate, parseCertificateLine, stringOptionValue } from '../../protocol/ssh-cert.js';
import { LEASE_CERT_EXTENSION } from '../../protocol/lease-claims.js';
import { CONSOLE_CLIENT_ID } from '../auth/sessions.js';

const PASSWORD = 'a long enough password';

/** A clock on a whole second, so that a session's end (its refresh token's expiry) is one too, as a lease's is. */
const wholeSecondClock = () => new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));

/** The expiry of the live (unrotated, unrevoked) refresh token of the session of `accessToken`: the session's end unless refreshed. */
async function sessionEnd(t: TestApp, accessToken: string): Promise<Date> {
  const sid = decodeJwt(accessToken).sid as string;
  const [row] = await t.deps.db
    .select()
    .from(refreshTokens)
    .where(and(eq(refreshTokens.familyId, sid), isNull(refreshTokens.rotatedAt), isNull(refreshTokens.revokedAt)));
  return row!.expiresAt;
}

/** The lease answer's three expiries (row, certificate's valid-before, token's exp) are all exactly `end`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
async function assertEndsAt(t: TestApp, issued: any, end: Date): Promise<void> {
  const cert = parseCertificate(parseCertificateLine(issued.certificate as string));
  const ext = cert.extensions.find((e) => e.name === LEASE_CERT_EXTENSION)!;
  const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, issued.lease.id as string));
  assert.equal(issued.lease.expires_at, end.toISOString(), 'the lease expires with its login session');
  assert.equal(row?.expiresAt.toISOString(), end.toISOString(), 'the lease row expires with its login session');
  assert.equal(Number(cert.validBefore), end.getTime() / 1000, 'the certificate is valid before the session\'s end');
  assert.equal(decodeJwt(stringOptionValue(ext)).exp, end.getTime() / 1000, 'the lease token expires with the session');
}

/** How often the one-statement open path issued so far. */
const issuedInOne = (t: TestApp) => Number(/^tunnel_control_lease_last_seen_total\{outcome="issued"\} (\d+)$/m.exec(t.deps.metrics.render())?.[1] ?? 0);

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`a lease never outlives the login session it came from (${name})`, { skip: makeApp.unavailable }, () => {
    it('refresh-token reuse and logout revoke the leases the session got, and only those', async () => {
      const t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const victim = await t.user(uniq('vic'), 'member', PASSWORD);
      const node = await enrollNode(t, admin.token);
      await heartbeat(t, node);
      const exposure = uniq('web-');
      await putExposure(t, victim.token, exposure);
      const login = async () => {
        const r = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: victim.name, password: PASSWORD } });
        assertOk(r);
        return r.body as { access_token: string; refresh_token: string };
      };
      const lease = async (token: string) => {
        const r = await t.call('POST', '/v1/leases', { token, body: { kind: 'expose', exposure, public_key: newClientKey().line, ttl_seconds: 86400 } });
        assertOk(r, 201);
        return r.body.lease.id as string;
      };
      const revokedAt = async (id: string) => (await t.call('GET', `/v1/leases/${id}`, { token: admin.token })).body.revoked_at as string | null;
      const reasons = async (ids: string[]) =>
        (await t.deps.db.select().from(auditEvents).where(and(eq(auditEvents.type, 'lease.revoked'), inArray(auditEvents.subject, ids)))).map((e) => e.data.reason);
      const feed = async (after: number) =>
        (await t.call('GET', `/v1/nodes/self/revocations?after=${after}`, { token: node.token })).body.revocations.map((r: { lease_id: string }) => r.lease_id) as string[];

      // Another login of the same user, whose lease must outlive the other sessions' ends.
      const other = await login();
      const others = await lease(other.access_token);

      // The thief rotated the stolen refresh token and got a lease; the victim's copy comes back later.
      const stolen = await login();
      const rotated = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: stolen.refresh_token } });
      assertOk(rotated);
      const thiefs = await lease(rotated.body.access_token);
      const beforeRotation = await lease(stolen.access_token);
      const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, thiefs));
      assert.ok(row?.sessionId, 'the lease records its login session');
      t.clock.advance((t.deps.settings.refreshReuseGrace + 1) * 1000);
      await heartbeat(t, node);
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor as number;
      const reuse = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: stolen.refresh_token } });
      assert.equal(reuse.status, 400);
      assert.equal((await t.call('GET', '/v1/me', { token: rotated.body.access_token })).status, 401, 'the family is revoked');
      assert.notEqual(await revokedAt(thiefs), null, 'the lease the thief got through the revoked family is revoked too');
      assert.notEqual(await revokedAt(beforeRotation), null, 'the lease of the family before its rotation is revoked too');
      assert.deepEqual(await reasons([thiefs, beforeRotation]), ['session_revoked', 'session_revoked']);
      assert.deepEqual((await feed(cursor)).sort(), [thiefs, beforeRotation].sort(), 'the relay hears of both');
      assert.equal(await revokedAt(others), null, 'another session\'s lease stays');

      const session = await login();
      const mine = await lease(session.access_token);
      assert.equal((await t.call('POST', '/v1/auth/logout', { token: session.access_token, body: {} })).status, 204);
      assert.notEqual(await revokedAt(mine), null, 'logging out revokes the session\'s leases');
      assert.deepEqual(await reasons([mine]), ['logout']);
      assert.equal(await revokedAt(others), null, 'another session\'s lease stays');

      // Logging out with another session's access token and this one's refresh token ends this one.
      const third = await login();
      const thirds = await lease(third.access_token);
      const fourth = await login();
      assert.equal((await t.call('POST', '/v1/auth/logout', { token: fourth.access_token, body: { refresh_token: third.refresh_token } })).status, 204);
      assert.notEqual(await revokedAt(thirds), null, 'the session named by the refresh token is ended with its leases');
      assert.equal(await revokedAt(others), null, 'another session\'s lease stays');
    });

    it('a lease through a login asked for longer than the session has left ends with the session, on both paths', async () => {
      const t = await makeApp({ settings: { maxLeaseTtl: 31 * 86400 }, clock: wholeSecondClock() });
      const admin = await t.user(uniq('admin'), 'admin');
      const owner = await t.user(uniq('own'), 'member', PASSWORD);
      const node = await enrollNode(t, admin.token);
      await heartbeat(t, node);
      const exposure = uniq('web-');
      await putExposure(t, owner.token, exposure);
      await exposeOn(t, admin.token, node, owner.token, exposure);
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: owner.name, password: PASSWORD } });
      assertOk(login);
      const lease = async (token: string, kind: 'expose' | 'open') => {
        const r = await t.call('POST', '/v1/leases', { token, body: { kind, exposure, public_key: newClientKey().line, ttl_seconds: 31 * 86400 } });
        assertOk(r, 201);
        return r.body;
      };
      const ends = await sessionEnd(t, login.body.access_token);
      assert.equal(ends.getTime() - t.clock.now().getTime(), t.deps.settings.refreshTokenTtl * 1000, 'the session has its 30 days left');
      await assertEndsAt(t, await lease(login.body.access_token, 'expose'), ends);
      // Open leases: the usual path, then the one statement on the state it saw.
      await assertEndsAt(t, await lease(login.body.access_token, 'open'), ends);
      const before = issuedInOne(t);
      await assertEndsAt(t, await lease(login.body.access_token, 'open'), ends);
      assert.equal(issuedInOne(t), before + 1, 'the second open lease is issued in one statement');

      // A day on, refreshed: the session ends 30 days from now, and so do its new leases.
      t.clock.advance(86400_000);
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      const refreshed = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: login.body.refresh_token } });
      assertOk(refreshed);
      const later = await sessionEnd(t, refreshed.body.access_token);
      assert.equal(later.getTime() - ends.getTime(), 86400_000);
      await assertEndsAt(t, await lease(refreshed.body.access_token, 'open'), later);
      await assertEndsAt(t, await lease(refreshed.body.access_token, 'open'), later);
    });

    it('a console session\'s lease ends by the session\'s 30 days, and none is issued once they are over', async () => {
      const t = await makeApp({ clock: wholeSecondClock() });
      const admin = await t.user(uniq('admin'), 'admin');
      const owner = await t.user(uniq('own'), 'member', PASSWORD);
      const node = await enrollNode(t, admin.token);
      await heartbeat(t, node);
      const exposure = uniq('web-');
      await putExposure(t, owner.token, exposure);
      const signIn = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: owner.name, password: PASSWORD, client_id: CONSOLE_CLIENT_ID } });
      assertOk(signIn);
      const ends = await sessionEnd(t, signIn.body.access_token);
      let refresh = signIn.body.refresh_token as string;
      /** The clock `before` ms before the session's end, and an access token refreshed then. */
      const refreshedAt = async (before: number) => {
        t.clock.set(new Date(ends.getTime() - before));
        const r = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: refresh } });
        assertOk(r);
        refresh = r.body.refresh_token as string;
        return r.body.access_token as string;
      };
      const lease = (token: string) => t.call('POST', '/v1/leases', { token, body: { kind: 'expose', exposure, public_key: newClientKey().line, ttl_seconds: 86400 } });

      // An hour before its end (refreshing keeps it), a lease asked for 24 h ends with the session.
      const lastHour = await refreshedAt(3600_000);
      assert.equal((await sessionEnd(t, lastHour)).getTime(), ends.getTime(), 'a refresh keeps the console session\'s end');
      await heartbeat(t, node);
      const l = await lease(lastHour);
      assertOk(l, 201);
      await assertEndsAt(t, l.body, ends);

      // Refreshed 5 minutes before the end, its access token ends with the session (not 10 minutes
      // later, when nothing would check the session's end on its use): no lease, no call through it then.
      const last = await refreshedAt(300_000);
      assert.equal((JSON.parse(Buffer.from(last.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp * 1000, ends.getTime());
      t.clock.set(new Date(ends.getTime() + 60_000));
      await heartbeat(t, node);
      assertProblem(await lease(last), 401, 'TOKEN_EXPIRED');
      assertProblem(await t.call('GET', '/v1/exposures', { token: last }), 401, 'TOKEN_EXPIRED');
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
