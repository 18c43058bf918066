/**
 * Exposures (PUT/GET/DELETE /v1/exposures) and admin-defined egress targets.
 * Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { exposures } from '../db/schema/index.js';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, issueLease, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`exposures and egress targets (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, owner: User, friend: User, stranger: User;
    let node: TestNode;
    const tok = (u: User, role: 'admin' | 'member' = 'member') => tokenFor(t, u, role);
    const put = async (u: User, n: string, body: Record<string, unknown>, role: 'admin' | 'member' = 'member') =>
      t.call('PUT', `/v1/exposures/${n}`, { token: await tok(u, role), body });
    const get = async (u: User, path: string, role: 'admin' | 'member' = 'member') => t.call('GET', path, { token: await tok(u, role) });

    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('xena'), 'member');
      friend = await t.user(uniq('yuri'), 'member');
      stranger = await t.user(uniq('zoe'), 'member');
      node = await enrollNode(t, admin.token);
    });

    describe('PUT /v1/exposures/{name}', () => {
      it('expect_allow: an edit of the list as read is refused (409, nothing changed) once the list is another, or the exposure is gone', async () => {
        const n = uniq('edit-');
        assertOk(await put(owner, n, { allow: [friend.name, stranger.name] }), 201);
        // As read, in any order: saved.
        assertOk(await put(owner, n, { allow: [friend.name], expect_allow: [stranger.name, friend.name, friend.name] }));
        // Meanwhile an admin takes friend off; an edit made on the old read (adding admin) would put friend back.
        assertOk(await put(admin, n, { allow: [] }, 'admin'));
        const stale = await put(owner, n, { allow: [friend.name, admin.name], expect_allow: [friend.name] });
        assertProblem(stale, 409, 'CONFLICT');
        assert.match(String(stale.body.detail), /changed since it was read \(now: nobody\); nothing was changed/);
        const [row] = await t.deps.db.select().from(exposures).where(eq(exposures.name, n));
        assert.deepEqual(row!.allow, [], 'the list an admin left is kept');
        // Read again: saved.
        assertOk(await put(owner, n, { allow: [admin.name], expect_allow: [] }));
        // Deleted since it was read: not made again.
        assertOk(await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(owner) }), 204);
        const gone = await put(owner, n, { allow: [friend.name], expect_allow: [admin.name] });
        assertProblem(gone, 409, 'CONFLICT');
        assert.match(String(gone.body.detail), /does not exist \(deleted since its allow list was read, or never made\)/);
        assert.equal((await t.deps.db.select().from(exposures).where(eq(exposures.name, n))).length, 0, 'not made again');
      });

      it('creates (201) and then updates (200) for the owner', async () => {
        const n = uniq('web-');
        const created = await put(owner, n, { allow: [friend.name, friend.name] });
        assertOk(created, 201);
        assert.deepEqual(created.body, {
          name: n,
          owner: owner.name,
          allow: [friend.name],
          pinned_node: null,
          node: null,
          online: false,
          port: null,
          created_at: t.clock.now().toISOString(),
        });
        const updated = await put(owner, n, {});
        assertOk(updated, 200);
        assert.deepEqual(updated.body.allow, []);
        assert.equal(updated.body.owner, owner.name);
      });

      it("another user cannot take over or change someone's exposure (FORBIDDEN)", async () => {
        const n = uniq('web-');
        assertOk(await put(owner, n, { allow: [friend.name] }), 201);
        assertProblem(await put(friend, n, { allow: [friend.name, stranger.name] }), 403, 'FORBIDDEN');
        assertProblem(await put(stranger, n, { allow: [stranger.name] }), 403, 'FORBIDDEN');
        assert.deepEqual((await get(owner, `/v1/exposures/${n}`)).body.allow, [friend.name]);
        assertOk(await put(admin, n, { allow: [] }, 'admin'), 200);
      });

      it('only admins pin or unpin a node, and only to a known node', async () => {
        const n = uniq('web-');
        assertOk(await put(owner, n, {}), 201);
        assertProblem(await put(owner, n, { node: node.name }), 403, 'FORBIDDEN');
        const pinned = await put(admin, n, { node: node.name }, 'admin');
        assertOk(pinned);
        assert.equal(pinned.body.pinned_node, node.name);
        assertProblem(await put(owner, n, { node: null }), 403, 'FORBIDDEN');
        assert.equal((await put(owner, n, { allow: [] })).body.pinned_node, node.name, 'an update without `node` keeps the pin');
        assertProblem(await put(admin, n, { node: uniq('ghost') }, 'admin'), 404, 'NOT_FOUND');
        assert.equal((await put(admin, n, { node: null }, 'admin')).body.pinned_node, null);
      });

      it('validates names and bodies', async () => {
        assertProblem(await put(owner, 'Bad_Name', {}), 400, 'VALIDATION_FAILED');
        assertProblem(await put(owner, 'x'.repeat(64), {}), 400, 'VALIDATION_FAILED');
        assertProblem(await put(owner, uniq('web-'), { allow: ['Not A User'] }), 400, 'VALIDATION_FAILED');
        assertProblem(await put(owner, uniq('web-'), { allow: 'everyone' }), 400, 'VALIDATION_FAILED');
      });

      it('refuses allow-list names no user has (UNKNOWN_USER), naming the first few, and writes nothing', async () => {
        const n = uniq('acl-');
        const ghosts = Array.from({ length: 8 }, () => uniq('ghost'));
        const refused = await put(owner, n, { allow: [friend.name, ...ghosts] });
        assertProblem(refused, 400, 'UNKNOWN_USER');
        const named = ghosts.filter((g) => refused.body.detail.includes(`"${g}"`));
        assert.equal(named.length, 5, `names the first five unknown names: ${refused.body.detail}`);
        assert.ok(!refused.body.detail.includes(friend.name), 'the known name is not listed');
        assertProblem(await get(owner, `/v1/exposures/${n}`), 404, 'NOT_FOUND');
        assertOk(await put(owner, n, { allow: [friend.name] }), 201);
        assertProblem(await put(owner, n, { allow: [friend.name, ghosts[0]!] }), 400, 'UNKNOWN_USER');
        assert.deepEqual((await get(owner, `/v1/exposures/${n}`)).body.allow, [friend.name], 'the refused update wrote nothing');
        // A disabled user still exists (and may be enabled again): naming one is not a typo.
        const gone = await t.user(uniq('gone'), 'member');
        assertOk(await t.call('DELETE', `/v1/users/${gone.name}`, { token: await tok(admin, 'admin') }));
        assertOk(await put(owner, n, { allow: [friend.name, gone.name] }));
        // A name a list already holds (written before names were checked) does not block editing it.
        await t.deps.db.update(exposures).set({ allow: [friend.name, ghosts[7]!] }).where(eq(exposures.name, n));
        assert.deepEqual((await put(owner, n, { allow: [ghosts[7]!] })).body.allow, [ghosts[7]]);
        assert.deepEqual((await put(owner, n, { allow: [] })).body.allow, []);
      });

      it('a service token may only touch the exposures its scopes name', async () => {
        const mine = uniq('hostx-');
        const x = await serviceAccess(t, await tok(owner), [`expose:${mine}`]);
        assertOk(await t.call('PUT', `/v1/exposures/${mine}`, { token: x.accessToken, body: {} }), 201);
        assertProblem(await t.call('PUT', `/v1/exposures/${uniq('other-')}`, { token: x.accessToken, body: {} }), 403, 'SCOPE_DENIED');
        const o = await serviceAccess(t, await tok(owner), [`open:${mine}`]);
        assertProblem(await t.call('PUT', `/v1/exposures/${mine}`, { token: o.accessToken, body: {} }), 403, 'SCOPE_DENIED');
        assertProblem(await t.call('DELETE', `/v1/exposures/${mine}`, { token: o.accessToken }), 403, 'SCOPE_DENIED');
      });
    });

    describe('GET /v1/exposures', () => {
      it('shows exposures to their owner, the ACL and admins only', async () => {
        const n = uniq('vis-');
        assertOk(await put(owner, n, { allow: [friend.name] }), 201);
        for (const [u, role] of [[owner, 'member'], [friend, 'member'], [admin, 'admin']] as const) {
          assertOk(await get(u, `/v1/exposures/${n}`, role));
          const list = await get(u, '/v1/exposures', role);
          assert.ok(list.body.exposures.some((e: { name: string }) => e.name === n), `${u.name} sees it`);
        }
        assertProblem(await get(stranger, `/v1/exposures/${n}`), 404, 'NOT_FOUND');
        assert.ok(!(await get(stranger, '/v1/exposures')).body.exposures.some((e: { name: string }) => e.name === n));
        assertProblem(await get(owner, `/v1/exposures/${uniq('none-')}`), 404, 'NOT_FOUND');
      });
    });

    describe('DELETE /v1/exposures/{name}', () => {
      it('deletes the exposure and revokes its leases (revocation feed entries)', async () => {
        const n = uniq('del-');
        assertOk(await put(owner, n, { allow: [friend.name] }), 201);
        await heartbeat(t, node);
        const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
        const x = await issueLease(t, await tok(owner), { kind: 'expose', exposure: n });
        const y = await issueLease(t, await tok(friend), { kind: 'open', exposure: n });
        assertProblem(await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(friend) }), 403, 'FORBIDDEN');
        assertProblem(await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(stranger) }), 404, 'NOT_FOUND');
        assert.equal((await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(owner) })).status, 204);
        assertProblem(await get(owner, `/v1/exposures/${n}`), 404, 'NOT_FOUND');
        const feed = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}`, { token: node.token });
        assert.deepEqual(feed.body.revocations.map((r: { lease_id: string }) => r.lease_id).sort(), [x.lease.id, y.lease.id].sort());
        assert.ok((await get(friend, `/v1/leases/${y.lease.id}`)).body.revoked_at);
        assertProblem(await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(owner) }), 404, 'NOT_FOUND');
      });

      it('an admin may delete any exposure', async () => {
        const n = uniq('del-');
        assertOk(await put(owner, n, {}), 201);
        assert.equal((await t.call('DELETE', `/v1/exposures/${n}`, { token: await tok(admin, 'admin') })).status, 204);
      });
    });

    describe('egress targets', () => {
      it('admins define, list and delete targets; members see only those allowing them', async () => {
        const n = uniq('tgt');
        const body = { node: node.name, host: 'db.internal', port: 5432, allow: [friend.name] };
        const saved = await t.call('PUT', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin'), body });
        assertOk(saved);
        assert.deepEqual(saved.body, { name: n, node: node.name, host: 'db.internal', port: 5432, allow: [friend.name], created_at: t.clock.now().toISOString() });
        const again = await t.call('PUT', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin'), body: { ...body, port: 6432 } });
        assert.equal(again.body.port, 6432);
        // A name no user has is refused (UNKNOWN_USER) and nothing is written.
        const ghost = uniq('ghost');
        const typo = await t.call('PUT', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin'), body: { ...body, port: 7432, allow: [friend.name, ghost] } });
        assertProblem(typo, 400, 'UNKNOWN_USER');
        assert.ok(typo.body.detail.includes(`"${ghost}"`), typo.body.detail);
        assertProblem(
          await t.call('PUT', `/v1/egress-targets/${uniq('tgt')}`, { token: await tok(admin, 'admin'), body: { ...body, allow: [ghost] } }),
          400,
          'UNKNOWN_USER',
        );
        assert.equal((await get(admin, '/v1/egress-targets', 'admin')).body.targets.find((x: { name: string }) => x.name === n).port, 6432);

        const names = async (u: User, role: 'admin' | 'member' = 'member') =>
          (await get(u, '/v1/egress-targets', role)).body.targets.map((x: { name: string }) => x.name);
        assert.ok((await names(friend)).includes(n));
        assert.ok((await names(admin, 'admin')).includes(n));
        assert.ok(!(await names(stranger)).includes(n));

        assertProblem(await t.call('PUT', `/v1/egress-targets/${n}`, { token: await tok(friend), body }), 403, 'FORBIDDEN');
        assertProblem(await t.call('DELETE', `/v1/egress-targets/${n}`, { token: await tok(friend) }), 403, 'FORBIDDEN');
        assert.equal((await t.call('DELETE', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin') })).status, 204);
        assertProblem(await t.call('DELETE', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin') }), 404, 'NOT_FOUND');
      });

      it('refuses unknown nodes and invalid ports', async () => {
        const admTok = await tok(admin, 'admin');
        assertProblem(await t.call('PUT', `/v1/egress-targets/${uniq('tgt')}`, { token: admTok, body: { node: uniq('ghost'), host: 'h', port: 1 } }), 404, 'NOT_FOUND');
        assertProblem(await t.call('PUT', `/v1/egress-targets/${uniq('tgt')}`, { token: admTok, body: { node: node.name, host: 'h', port: 70000 } }), 400, 'VALIDATION_FAILED');
      });
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
