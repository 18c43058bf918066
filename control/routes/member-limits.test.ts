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
import { uniq } from '../testing/fixtures.js';

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
