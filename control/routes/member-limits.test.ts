/**
 * What one member may hold (services/member-limits.ts): a member creating exposures or service
 * tokens without end grew the tables that every user's lists read whole. Past the cap a new one
 * is 409 CONFLICT; updates, deletes, revocations and admins are not held back. PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { tokenFor, uniq } from '../testing/fixtures.js';
import { eq, sql } from 'drizzle-orm';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { serviceTokens } from '../db/schema/index.js';
import { GRANT_SERVICE_TOKEN } from '../../protocol/api-types.js';
import { DEAD_TOKEN_RETENTION_MS, DEAD_TOKENS_KEPT } from '../services/service-tokens.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`what one member may hold (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, member: User;
    const put = (u: User, n: string, allow: string[] = []) => t.call('PUT', `/v1/exposures/${n}`, { token: u.token, body: { allow } });
    const token = (u: User, body: Record<string, unknown> = {}) =>
      t.call('POST', '/v1/service-tokens', { token: u.token, body: { name: uniq('st'), scopes: ['open:*'], ...body } });

    before(async () => {
      t = await makeApp({ settings: { maxExposuresPerMember: 3, maxServiceTokensPerMember: 2 } });
      admin = await t.user(uniq('admin'), 'admin');
      member = await t.user(uniq('mem'), 'member');
    });

    it('exposures: a member creates up to the cap, then 409 CONFLICT; updating one they own still works', async () => {
      const names = [uniq('cap-'), uniq('cap-'), uniq('cap-')];
      for (const n of names) assertOk(await put(member, n), 201);
      const over = await put(member, uniq('cap-'));
      assertProblem(over, 409, 'CONFLICT');
      assert.match(over.body.detail, /most a member may own \(3\)/);
      assertOk(await put(member, names[0]!, [admin.name]), 200);
      // Deleting one makes room again.
      assert.equal((await t.call('DELETE', `/v1/exposures/${names[1]}`, { token: member.token })).status, 204);
      assertOk(await put(member, uniq('cap-')), 201);
      assertProblem(await put(member, uniq('cap-')), 409, 'CONFLICT');
      // Someone else's name is the policy's to answer, not the cap's.
      const other = await t.user(uniq('other'), 'member');
      const theirs = uniq('theirs-');
      assertOk(await put(other, theirs), 201);
      assertProblem(await put(member, theirs), 403, 'FORBIDDEN');
      const list = await t.call('GET', '/v1/exposures', { token: member.token });
      assert.equal(list.body.exposures.filter((e: { owner: string }) => e.owner === member.name).length, 3);
    });

    it('service tokens: a member has up to the cap live, then 409 CONFLICT; revoking one makes room', async () => {
      const m = await t.user(uniq('tok'), 'member');
      const first = await token(m);
      assertOk(first, 201);
      assertOk(await token(m), 201);
      const over = await token(m);
      assertProblem(over, 409, 'CONFLICT');
      assert.match(over.body.detail, /most a member may have \(2\)/);
      assertOk(await t.call('DELETE', `/v1/service-tokens/${first.body.id}`, { token: m.token }));
      assertOk(await token(m), 201);
      assertProblem(await token(m), 409, 'CONFLICT');
    });

    it('service tokens: revoked and expired ones do not pile up (create-and-revoke loop, expiry), and the audit keeps their history', async () => {
      // An app of its own: this case moves the clock by a month.
      const a = await makeApp({ settings: { maxServiceTokensPerMember: 2 } });
      const boss = await a.user(uniq('admin'), 'admin');
      const m = await a.user(uniq('loop'), 'member');
      const create = async (u: { id: string; name: string }, role: 'admin' | 'member', body: Record<string, unknown> = {}) => {
        const res = await a.call('POST', '/v1/service-tokens', { token: await tokenFor(a, u, role), body: { name: uniq('st'), scopes: ['open:*'], ...body } });
        assertOk(res, 201);
        return res.body as { id: string; token: string };
      };
      const made: { id: string; token: string }[] = [];
      for (let i = 0; i < DEAD_TOKENS_KEPT + 10; i++) {
        const st = await create(m, 'member');
        made.push(st);
        assertOk(await a.call('DELETE', `/v1/service-tokens/${st.id}`, { token: await tokenFor(a, m, 'member') }));
        a.clock.advance(1000);
      }
      const live = await create(m, 'member');
      const rows = await a.deps.db.select({ id: serviceTokens.id }).from(serviceTokens).where(eq(serviceTokens.userId, m.id));
      assert.equal(rows.length, DEAD_TOKENS_KEPT + 1, 'the newest dead ones and the live one');
      const listed = (await a.call('GET', '/v1/service-tokens', { token: await tokenFor(a, m, 'member') })).body.service_tokens as { id: string }[];
      assert.deepEqual(new Set(listed.map((x) => x.id)), new Set([live.id, ...made.slice(-DEAD_TOKENS_KEPT).map((x) => x.id)]));
      // A pruned token's secret is worth nothing.
      assertProblem(await a.call('POST', '/v1/auth/token', { body: { grant_type: GRANT_SERVICE_TOKEN, service_token: made[0]!.token } }), 400, 'INVALID_GRANT');
      const audit = async (q: string) => (await a.call('GET', `/v1/audit?limit=1000&${q}`, { token: await tokenFor(a, boss) })).body.events;
      const pruned = (await audit(`subject=${m.id}&type=service_token.pruned`)) as { data: { service_tokens: string[] } }[];
      assert.deepEqual(pruned.flatMap((e) => e.data.service_tokens).sort(), made.slice(0, 10).map((x) => x.id).sort());
      const revoked = (await audit('type=service_token.revoked')) as { subject: string }[];
      for (const x of made) assert.ok(revoked.some((e) => e.subject === x.id), `revocation of ${x.id} still audited`);

      // Expired ones (never revoked) go once dead for DEAD_TOKEN_RETENTION_MS, whoever creates the next token.
      const n = await a.user(uniq('exp'), 'member');
      const short = await create(n, 'member', { ttl_seconds: 60 });
      a.clock.advance(DEAD_TOKEN_RETENTION_MS + 120_000);
      await create(boss, 'admin');
      assert.equal((await a.deps.db.select({ id: serviceTokens.id }).from(serviceTokens).where(eq(serviceTokens.id, short.id))).length, 0);
    });

    // Races need a second connection: Postgres only (PGlite has one).
    if (name === 'Postgres') it('concurrent creates at the cap: one passes, the others are refused (exposures and service tokens)', async () => {
      const cases = [
        { cap: 3, create: (u: User) => put(u, uniq('race-')), count: async (u: User) =>
          (await t.call('GET', '/v1/exposures', { token: u.token })).body.exposures.filter((e: { owner: string }) => e.owner === u.name).length },
        { cap: 2, create: (u: User) => token(u), count: async (u: User) =>
          (await t.call('GET', '/v1/service-tokens', { token: u.token })).body.service_tokens.filter((x: { revoked: boolean }) => !x.revoked).length },
      ];
      for (const c of cases) {
        const m = await t.user(uniq('race'), 'member');
        for (let i = 0; i < c.cap - 1; i++) assertOk(await c.create(m), 201);
        // The member's row held `for update`: it blocks the creators' row lock (with the cap
        // counted under it) and, without that lock, the inserts' key-share locks (with the cap
        // already counted by each): either way all three wait here, then go.
        const hold = await holdRows(t, sql`select id from users where id = ${m.id} for update`);
        const waiting = await lockWaiters(t);
        const answers = [c.create(m), c.create(m), c.create(m)];
        await until('the three creates wait for the held row', async () => (await lockWaiters(t)) >= waiting + 3);
        await hold.release();
        const statuses = (await Promise.all(answers)).map((r) => r.status).sort();
        assert.deepEqual(statuses, [201, 409, 409]);
        assert.equal(await c.count(m), c.cap);
      }
    });

    it('admins are not capped, for themselves or for a member', async () => {
      for (let i = 0; i < 4; i++) assertOk(await put(admin, uniq('adm-')), 201);
      for (let i = 0; i < 3; i++) assertOk(await token(admin), 201);
      const m = await t.user(uniq('fleet'), 'member');
      for (let i = 0; i < 3; i++) assertOk(await token(admin, { user: m.name }), 201);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
