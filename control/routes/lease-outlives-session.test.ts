/**
 * A lease never outlives the login session it was issued through (found by h-attack): a refresh
 * token presented again after its rotation (the theft signal of auth/sessions.ts: "both the thief
 * and the victim must log in again") revokes the session's refresh-token family, its access
 * tokens, and now the leases those access tokens got ('session_revoked'), through the relays'
 * revocation feed; so does a logout ('logout'). The lease row records its session (`session_id`,
 * the access token's `sid`); leases of the user's other sessions stay. Runs on PGlite and on a
 * real Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { and, eq, inArray } from 'drizzle-orm';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, putExposure, uniq } from '../testing/fixtures.js';
import { auditEvents, leases } from '../db/schema/index.js';

const PASSWORD = 'a long enough password';

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
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
