/**
 * Open leases in one statement on the state this replica saw last (issue 11, CPU per lease):
 * the second lease of a caller on an exposure is issued by one statement, with the rows and
 * answer of the usual path; and every change that takes a grant back, committed between two
 * leases, makes that statement write nothing, so the request gets the usual path's answer (a
 * replica's memory never lets a revoked grant through). Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { and, eq, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, onlineExposure, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { auditEvents, leases, rateLimits, serviceTokens } from '../db/schema/index.js';

type User = { id: string; name: string; token: string };
const PASSWORD = 'last seen test password';

/** How often the one statement issued, and found the state changed, in this app so far. */
function outcomes(t: TestApp): { issued: number; changed: number } {
  const text = t.deps.metrics.render();
  const count = (outcome: string) => Number(new RegExp(`^tunnel_control_lease_last_seen_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { issued: count('issued'), changed: count('changed') };
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`open leases on the state last seen (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, owner: User;
    let node: TestNode;
    let exposure: string;
    let friend: User;
    const open = async (token: string) => t.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure, public_key: newClientKey().line } });

    before(async () => {
      t = await makeApp({ settings: { leaseRateLimit: 4 } });
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('xavier'), 'member');
      node = await enrollNode(t, admin.token);
    });

    beforeEach(async () => {
      // A fresh friend and exposure per test, online on the node, and a fresh rate-limit window.
      t.clock.advance(61_000);
      admin.token = await tokenFor(t, admin, 'admin');
      owner.token = await tokenFor(t, owner, 'member');
      friend = await t.user(uniq('yara'), 'member', PASSWORD);
      exposure = await onlineExposure(t, node, admin.token, owner.token, [friend.name]);
    });

    it('issues the second lease in one statement, with the usual rows, count and answer', async () => {
      const token = await tokenFor(t, friend, 'member');
      const before = outcomes(t);
      const first = await open(token);
      assertOk(first, 201);
      assert.deepEqual(outcomes(t), before, 'the first lease takes the usual path');
      const second = await open(await tokenFor(t, friend, 'member'));
      assertOk(second, 201);
      assert.deepEqual(outcomes(t), { ...before, issued: before.issued + 1 });

      const a = first.body, b = second.body;
      assert.deepEqual(b.relay, a.relay);
      for (const k of ['kind', 'user', 'node', 'exposure', 'port', 'targets', 'revoked_at'] as const) assert.deepEqual(b.lease[k], a.lease[k], k);
      assert.notEqual(b.lease.id, a.lease.id);
      const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, b.lease.id));
      assert.equal(row?.userId, friend.id);
      assert.equal(row?.nodeId, node.id);
      assert.equal(row?.kind, 'open');
      assert.equal(row?.port, 22);
      assert.equal(row?.serviceTokenId, null);
      assert.equal(row?.expiresAt.toISOString(), b.lease.expires_at);
      // The answer's lease (its times written out once, SignedLease.times) is the lease as stored, on either path.
      for (const issued of [a, b]) {
        const stored = await t.call('GET', `/v1/leases/${issued.lease.id}`, { token });
        assertOk(stored);
        assert.deepEqual(stored.body, issued.lease);
      }
      const audits = await t.deps.db.select().from(auditEvents).where(and(eq(auditEvents.type, 'lease.issued'), eq(auditEvents.actor, friend.id)));
      assert.deepEqual(audits.map((e) => e.subject).sort(), [a.lease.id, b.lease.id].sort());
      const data = (id: string) => audits.find((e) => e.subject === id)!.data;
      assert.deepEqual(Object.keys(data(b.lease.id)), Object.keys(data(a.lease.id)));
      assert.deepEqual({ ...data(b.lease.id), ssh_key: 0, serial: 0 }, { ...data(a.lease.id), ssh_key: 0, serial: 0 });
      const [counter] = await t.deps.db.select().from(rateLimits).where(eq(rateLimits.key, `lease:${friend.id}`));
      assert.equal(counter?.count, 2, 'both attempts counted');
    });

    it('counts against the rate limit and refuses over it, as the usual path', async () => {
      const token = await tokenFor(t, friend, 'member');
      for (let i = 0; i < 4; i++) assertOk(await open(token), 201);
      const before = outcomes(t);
      assertProblem(await open(token), 429, 'RATE_LIMITED');
      assert.equal(outcomes(t).changed, before.changed, 'refused by the one statement, not by a fallback');
      const rows = await t.deps.db.select().from(leases).where(eq(leases.userId, friend.id));
      assert.equal(rows.length, 4);
    });

    const revocations: { what: string; change: () => Promise<void>; status: number; code: Parameters<typeof assertProblem>[2] }[] = [
      {
        what: 'taken off the allow list',
        change: async () => assertOk(await t.call('PUT', `/v1/exposures/${exposure}`, { token: owner.token, body: { allow: [] } })),
        status: 403,
        code: 'NOT_IN_ACL',
      },
      {
        what: 'disabled',
        change: async () => assertOk(await t.call('PATCH', `/v1/users/${friend.name}`, { token: admin.token, body: { disabled: true } })),
        status: 401,
        code: 'TOKEN_INVALID',
      },
      {
        what: 'the exposure went offline',
        change: () => heartbeat(t, node, []),
        status: 409,
        code: 'EXPOSURE_OFFLINE',
      },
    ];
    for (const r of revocations) {
      it(`refuses the next lease once ${r.what}: the one statement writes nothing, the usual path answers`, async () => {
        const token = await tokenFor(t, friend, 'member');
        assertOk(await open(token), 201);
        await r.change();
        const before = outcomes(t);
        const [counted] = await t.deps.db.select().from(rateLimits).where(eq(rateLimits.key, `lease:${friend.id}`));
        assertProblem(await open(token), r.status, r.code);
        assert.deepEqual(outcomes(t), { ...before, changed: before.changed + 1 }, 'the one statement ran and found the state changed');
        const rows = await t.deps.db.select().from(leases).where(and(eq(leases.userId, friend.id), eq(leases.kind, 'open')));
        assert.equal(rows.length, 1, 'no lease written');
        const [after] = await t.deps.db.select().from(rateLimits).where(eq(rateLimits.key, `lease:${friend.id}`));
        if (r.status !== 401) assert.equal(after?.count, (counted?.count ?? 0) + 1, 'counted once, by the usual path');
      });
    }

    it('answers a remembered caller\'s invalid request as the usual path: the caller lookup (counted, 401 for a dead caller) before the 400', async () => {
      // The guard defers a remembered caller's lookup before the body is validated; a body the
      // route then refuses must still be counted, and a dead caller still refused first.
      const token = await tokenFor(t, friend, 'member');
      assertOk(await open(token), 201);
      const count = async () => (await t.deps.db.select().from(rateLimits).where(eq(rateLimits.key, `lease:${friend.id}`)))[0]?.count;
      const before = await count();
      const invalid = { kind: 'open', exposure, public_key: 'ssh-ed25519 not-a-key' };
      assertProblem(await t.call('POST', '/v1/leases', { token, body: invalid }), 400, 'VALIDATION_FAILED');
      assert.equal(await count(), (before ?? 0) + 1, 'counted, as the usual path counts it');
      assertProblem(await t.call('POST', '/v1/leases', { token, body: { ...invalid, surplus: 1 } }), 400, 'UNKNOWN_FIELD');
      assertOk(await t.call('PATCH', `/v1/users/${friend.name}`, { token: admin.token, body: { disabled: true } }));
      assertProblem(await t.call('POST', '/v1/leases', { token, body: invalid }), 401, 'TOKEN_INVALID');
    });

    it('refuses the next lease of a login session once it is logged out', async () => {
      const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: friend.name, password: PASSWORD } });
      assertOk(login);
      const token = login.body.access_token as string;
      assertOk(await open(token), 201);
      assertOk(await open(token), 201);
      const before = outcomes(t);
      assert.equal((await t.call('POST', '/v1/auth/logout', { token })).status, 204);
      assertProblem(await open(token), 401, 'TOKEN_INVALID');
      assert.deepEqual(outcomes(t), { ...before, changed: before.changed + 1 });
    });

    it('issues leases through a service token whose stored expiry has microseconds, the second in one statement', async () => {
      // This control plane writes expiries from JS dates (milliseconds); an operator's SQL
      // (`now() + interval ...`) or a restored dump may store microseconds, which the caller
      // lookup reads back truncated to milliseconds. The locked insert compares the two.
      const userToken = await tokenFor(t, friend, 'member');
      const st = await serviceAccess(t, userToken, [`open:${exposure}`]);
      const endsMs = t.clock.now().getTime() + 3_600_000;
      const ends = new Date(endsMs).toISOString().replace('Z', '456Z');
      await t.deps.db.execute(sql`update ${serviceTokens} set expires_at = ${ends}::timestamptz where ${serviceTokens.id} = ${st.id}`);
      const before = outcomes(t);
      const first = await open(st.accessToken);
      assertOk(first, 201);
      assertOk(await open(st.accessToken), 201);
      assert.deepEqual(outcomes(t), { ...before, issued: before.issued + 1 }, 'the second lease in one statement');
      assert.ok(Date.parse(first.body.lease.expires_at) <= endsMs, 'capped at the token');
    });

    it('refuses the next lease of a service token once it is revoked, or its scopes no longer cover the exposure', async () => {
      for (const change of ['revoke', 'rescope'] as const) {
        t.clock.advance(61_000); // a fresh rate-limit window
        await heartbeat(t, node, [{ name: exposure, port: 22 }]);
        const userToken = await tokenFor(t, friend, 'member');
        const st = await serviceAccess(t, userToken, [`open:${exposure}`]);
        assertOk(await open(st.accessToken), 201);
        assertOk(await open(st.accessToken), 201);
        const before = outcomes(t);
        if (change === 'revoke') assertOk(await t.call('DELETE', `/v1/service-tokens/${st.id}`, { token: userToken }));
        else assertOk(await t.call('PATCH', `/v1/service-tokens/${st.id}`, { token: userToken, body: { scopes: ['open:elsewhere'] } }));
        const res = await open(st.accessToken);
        assert.ok(res.status === 401 || res.status === 403, `${change}: ${res.status}`);
        assert.deepEqual(outcomes(t), { ...before, changed: before.changed + 1 }, change);
      }
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
