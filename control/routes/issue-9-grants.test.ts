/**
 * Issue 9, findings 1-3, through the real HTTP server, on PGlite and on a real Postgres:
 * 1. scoped service tokens do exactly what their scopes say;
 * 2. a relay brings online only an exposure it holds an expose lease for;
 * 3. removing a grant revokes the leases that depended on it at once (into the relays' feeds).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { serveTestApp, type ServedApp } from '../testing/serve.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, exposeOn, heartbeat, issueLease, newClientKey, putExposure, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`issue 9: grants (${name})`, { skip: makeApp.unavailable }, () => {
    /** The app, with `call` going over real HTTP. */
    let t: TestApp;
    let served: ServedApp;
    let admin: User, owner: User, friend: User, bob: User;
    let relayA: TestNode, relayB: TestNode;
    const adminTok = () => tokenFor(t, admin, 'admin');
    const tok = (u: User) => tokenFor(t, u, 'member');
    const feed = async (n: TestNode, after = '0') => {
      const r = await t.call('GET', `/v1/nodes/self/revocations?after=${after}`, { token: n.token });
      assertOk(r);
      return { cursor: r.body.cursor as string, ids: r.body.revocations.map((x: { lease_id: string }) => x.lease_id) as string[] };
    };
    const heldOnA: { name: string; port: number }[] = [];
    /** An exposure of `owner` held by relay A (X connected there), with `allow` on its list. */
    const onlineExposure = async (allow: string[] = []) => {
      const e = uniq('g-');
      await putExposure(t, await tok(owner), e, allow);
      const x = await exposeOn(t, await adminTok(), relayA, await tok(owner), e);
      // A heartbeat lists everything the relay holds, so earlier exposures stay online.
      heldOnA.push({ name: e, port: 22 });
      await heartbeat(t, relayA, heldOnA);
      await heartbeat(t, relayB);
      return { name: e, exposeLease: x };
    };

    before(async () => {
      const app = await makeApp();
      served = await serveTestApp(app);
      t = { ...app, call: served.call };
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('olga'), 'member');
      friend = await t.user(uniq('fred'), 'member');
      bob = await t.user(uniq('bob'), 'member');
      relayA = await enrollNode(t, admin.token);
      relayB = await enrollNode(t, admin.token);
    });

    after(() => served?.close());

    describe('finding 1: a scoped service token does what its scopes say, and nothing else', () => {
      it("an admin's token scoped expose:NAME cannot list, read or revoke anything else", async () => {
        const mine = await onlineExposure();
        const other = await onlineExposure([friend.name]);
        const othersLease = await issueLease(t, await tok(friend), { kind: 'open', exposure: other.name });
        const othersToken = await serviceAccess(t, await tok(bob), ['open:*']);
        const st = await serviceAccess(t, await adminTok(), [`expose:${mine.name}`]);
        const call = (method: string, path: string, body?: unknown) => t.call(method, path, { token: st.accessToken, body });

        assertProblem(await call('GET', '/v1/leases?all=true'), 403, 'SCOPE_DENIED');
        const own = await call('GET', '/v1/leases');
        assertOk(own);
        assert.deepEqual(own.body.leases, [], 'only the leases this token issued');
        const exposures = await call('GET', '/v1/exposures');
        assertOk(exposures);
        assert.deepEqual(exposures.body.exposures.map((e: { name: string }) => e.name), [mine.name]);
        assertProblem(await call('GET', `/v1/exposures/${other.name}`), 404, 'NOT_FOUND');
        assertProblem(await call('GET', `/v1/leases/${othersLease.lease.id}`), 404, 'NOT_FOUND');
        assertProblem(await call('DELETE', `/v1/leases/${othersLease.lease.id}`), 404, 'NOT_FOUND');
        assertProblem(await call('DELETE', `/v1/service-tokens/${othersToken.id}`), 403, 'SCOPE_DENIED');
        assertProblem(await call('GET', '/v1/service-tokens'), 403, 'SCOPE_DENIED');
        assertProblem(await call('GET', '/v1/nodes'), 403, 'SCOPE_DENIED');
        assertProblem(await call('GET', '/v1/users'), 403, 'SCOPE_DENIED');
        assertProblem(await call('PUT', `/v1/exposures/${mine.name}`, { allow: [bob.name] }), 403, 'SCOPE_DENIED');
        assertProblem(await call('DELETE', `/v1/exposures/${mine.name}`), 403, 'SCOPE_DENIED');
        // Nothing changed behind the refusals.
        const still = await t.call('GET', `/v1/leases/${othersLease.lease.id}`, { token: await tok(friend) });
        assert.equal(still.body.revoked_at, null);
        assert.equal((await t.call('GET', `/v1/exposures/${mine.name}`, { token: await tok(owner) })).body.allow.length, 0);

        // What it may do: expose NAME, and see and revoke the lease it issued.
        const issued = await call('POST', '/v1/leases', { kind: 'expose', exposure: mine.name, public_key: newClientKey().line });
        assertOk(issued, 201);
        const listed = await call('GET', '/v1/leases');
        assert.deepEqual(listed.body.leases.map((l: { id: string }) => l.id), [issued.body.lease.id]);
        assertOk(await call('DELETE', `/v1/leases/${issued.body.lease.id}`));
      });

      it("an expose:NAME token may create NAME but not rewrite its allow list; manage:NAME may", async () => {
        const e = uniq('g-');
        const expose = await serviceAccess(t, await tok(owner), [`expose:${e}`]);
        assertOk(await t.call('PUT', `/v1/exposures/${e}`, { token: expose.accessToken, body: { allow: [friend.name] } }), 201);
        assertProblem(await t.call('PUT', `/v1/exposures/${e}`, { token: expose.accessToken, body: { allow: [] } }), 403, 'SCOPE_DENIED');
        assert.deepEqual((await t.call('GET', `/v1/exposures/${e}`, { token: await tok(owner) })).body.allow, [friend.name]);
        const manage = await serviceAccess(t, await tok(owner), [`manage:${e}`]);
        assertOk(await t.call('PUT', `/v1/exposures/${e}`, { token: manage.accessToken, body: { allow: [] } }));
        // A member's manage:* still cannot manage what the member does not own.
        const other = uniq('g-');
        await putExposure(t, await tok(bob), other, [owner.name]);
        const star = await serviceAccess(t, await tok(owner), ['manage:*']);
        assertProblem(await t.call('PUT', `/v1/exposures/${other}`, { token: star.accessToken, body: { allow: [] } }), 403, 'FORBIDDEN');
      });
    });

    describe('finding 2: a relay cannot take over an exposure', () => {
      it('heartbeat or exposure_online from a node without an expose lease for it changes nothing', async () => {
        const e = await onlineExposure([friend.name]);
        const view = async () => (await t.call('GET', `/v1/exposures/${e.name}`, { token: await tok(owner) })).body;
        assert.equal((await view()).node, relayA.name);
        await heartbeat(t, relayB, [{ name: e.name, port: 2222 }]);
        assert.equal((await view()).node, relayA.name);
        assert.equal((await view()).port, 22);
        const ev = await t.call('POST', '/v1/nodes/self/events', {
          token: relayB.token,
          body: { events: [{ type: 'exposure_online', at: t.clock.now().toISOString(), exposure: e.name, port: 2222 }] },
        });
        assert.equal(ev.status, 202);
        assert.equal((await view()).node, relayA.name);
        const open = await issueLease(t, await tok(friend), { kind: 'open', exposure: e.name });
        assert.equal(open.relay.node_id, relayA.id, 'Y is sent to the relay that holds the lease');
        assert.equal(open.relay.host_key, relayA.hostKey);
      });

      it('a node whose expose lease was revoked cannot bring the exposure back online', async () => {
        const e = await onlineExposure();
        assertOk(await t.call('DELETE', `/v1/leases/${e.exposeLease.lease.id}`, { token: await tok(owner) }));
        await heartbeat(t, relayA, []);
        await heartbeat(t, relayA, [{ name: e.name, port: 22 }]);
        const v = (await t.call('GET', `/v1/exposures/${e.name}`, { token: await tok(owner) })).body;
        assert.equal(v.online, false);
      });
    });

    describe('finding 3: removing a grant revokes the leases that depended on it', () => {
      it('taking a user off the allow list revokes their open leases, not the owner\'s or an admin\'s', async () => {
        const e = await onlineExposure([friend.name, bob.name]);
        const { cursor } = await feed(relayA);
        const f = await issueLease(t, await tok(friend), { kind: 'open', exposure: e.name });
        const b = await issueLease(t, await tok(bob), { kind: 'open', exposure: e.name });
        const o = await issueLease(t, await tok(owner), { kind: 'open', exposure: e.name });
        const a = await issueLease(t, await adminTok(), { kind: 'open', exposure: e.name });
        assertOk(await t.call('PUT', `/v1/exposures/${e.name}`, { token: await tok(owner), body: { allow: [bob.name] } }));
        assert.deepEqual((await feed(relayA, cursor)).ids, [f.lease.id]);
        const lease = async (id: string, u: User) => (await t.call('GET', `/v1/leases/${id}`, { token: await tokenFor(t, u, u === admin ? 'admin' : 'member') })).body;
        assert.equal((await lease(f.lease.id, friend)).revoked_at, t.clock.now().toISOString());
        for (const [l, u] of [[b, bob], [o, owner], [a, admin]] as const) assert.equal((await lease(l.lease.id, u)).revoked_at, null);
        assertProblem(await t.call('POST', '/v1/leases', { token: await tok(friend), body: { kind: 'open', exposure: e.name, public_key: newClientKey().line } }), 403, 'NOT_IN_ACL');
      });

      it('deleting an egress target, or taking a user off it, revokes the egress leases that reach it', async () => {
        const put = (name: string, allow: string[], port = 5432) =>
          t.call('PUT', `/v1/egress-targets/${name}`, { token: admin.token, body: { node: relayB.name, host: '10.1.0.7', port, allow } });
        const db = uniq('db');
        const cache = uniq('cache');
        assertOk(await put(db, [friend.name, bob.name]));
        assertOk(await t.call('PUT', `/v1/egress-targets/${cache}`, { token: admin.token, body: { node: relayB.name, host: '10.1.0.8', port: 6379, allow: [friend.name] } }));
        const { cursor } = await feed(relayB);
        const fDb = await issueLease(t, await tok(friend), { kind: 'egress', targets: [db] });
        const bDb = await issueLease(t, await tok(bob), { kind: 'egress', targets: [db] });
        const fCache = await issueLease(t, await tok(friend), { kind: 'egress', targets: [cache] });
        assertOk(await put(db, [friend.name]));
        assert.deepEqual((await feed(relayB, cursor)).ids, [bDb.lease.id]);
        assert.equal((await t.call('DELETE', `/v1/egress-targets/${db}`, { token: admin.token })).status, 204);
        assert.deepEqual((await feed(relayB, cursor)).ids, [bDb.lease.id, fDb.lease.id]);
        const still = await t.call('GET', `/v1/leases/${fCache.lease.id}`, { token: await tok(friend) });
        assert.equal(still.body.revoked_at, null, 'leases to other targets stay');
      });

      it('revoking a service token, or narrowing its scopes, revokes the leases issued through it', async () => {
        const e1 = await onlineExposure([friend.name]);
        const e2 = await onlineExposure([friend.name]);
        const st = await serviceAccess(t, await tok(friend), [`open:${e1.name}`, `open:${e2.name}`]);
        const open = async (e: string) =>
          (await t.call('POST', '/v1/leases', { token: st.accessToken, body: { kind: 'open', exposure: e, public_key: newClientKey().line } }));
        const l1 = await open(e1.name);
        const l2 = await open(e2.name);
        assertOk(l1, 201);
        assertOk(l2, 201);
        const { cursor } = await feed(relayA);
        const narrowed = await t.call('PATCH', `/v1/service-tokens/${st.id}`, { token: await tok(friend), body: { scopes: [`open:${e2.name}`] } });
        assertOk(narrowed);
        assert.deepEqual(narrowed.body.scopes, [`open:${e2.name}`]);
        assert.deepEqual((await feed(relayA, cursor)).ids, [l1.body.lease.id]);
        // The access token minted before the change follows it at once.
        assertProblem(await open(e1.name), 403, 'SCOPE_DENIED');
        assertOk(await t.call('DELETE', `/v1/service-tokens/${st.id}`, { token: await tok(friend) }));
        assert.deepEqual((await feed(relayA, cursor)).ids, [l1.body.lease.id, l2.body.lease.id]);
        assertProblem(await open(e2.name), 401, 'TOKEN_INVALID');
      });

      // Egress leases name host:port, not targets: two targets may reach the same one. A lease
      // stays after a narrowing only if the token could get it again, the target's allow list too.
      it("narrowing a token's egress scopes to another target of the same host:port that does not list its user revokes the lease", async () => {
        const reach = { node: relayB.name, host: '10.1.0.20', port: 5432 };
        const mine = uniq('db');
        const theirs = uniq('db');
        assertOk(await t.call('PUT', `/v1/egress-targets/${mine}`, { token: admin.token, body: { ...reach, allow: [friend.name] } }));
        assertOk(await t.call('PUT', `/v1/egress-targets/${theirs}`, { token: admin.token, body: { ...reach, allow: [bob.name] } }));
        const st = await serviceAccess(t, await tok(friend), [`egress:${mine}`, `egress:${theirs}`]);
        const egress = (target: string) => t.call('POST', '/v1/leases', { token: st.accessToken, body: { kind: 'egress', targets: [target], public_key: newClientKey().line } });
        const l = await egress(mine);
        assertOk(l, 201);
        const { cursor } = await feed(relayB);
        assertOk(await t.call('PATCH', `/v1/service-tokens/${st.id}`, { token: await tok(friend), body: { scopes: [`egress:${theirs}`] } }));
        // What the token may get now: nothing at that host:port.
        assertProblem(await egress(mine), 403, 'SCOPE_DENIED');
        assertProblem(await egress(theirs), 403, 'NOT_IN_ACL');
        assert.deepEqual((await feed(relayB, cursor)).ids, [l.body.lease.id]);
      });

      it('disabling a user revokes their leases', async () => {
        const u = await t.user(uniq('temp'), 'member');
        const e = await onlineExposure([u.name]);
        const l = await issueLease(t, await tok(u), { kind: 'open', exposure: e.name });
        const { cursor } = await feed(relayA);
        assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await adminTok() }));
        assert.deepEqual((await feed(relayA, cursor)).ids, [l.lease.id]);
      });

      it('PATCH disabled:true revokes their leases; demoting an admin revokes what only the admin role allowed', async () => {
        const u = await t.user(uniq('temp'), 'member');
        const e = await onlineExposure([u.name]);
        const l = await issueLease(t, await tok(u), { kind: 'open', exposure: e.name });
        let { cursor } = await feed(relayA);
        assertOk(await t.call('PATCH', `/v1/users/${u.name}`, { token: await adminTok(), body: { disabled: true } }));
        assert.deepEqual((await feed(relayA, cursor)).ids, [l.lease.id]);

        const ex = await t.user(uniq('exadmin'), 'admin');
        const listed = await onlineExposure([ex.name]);
        const unlisted = await onlineExposure([]);
        const target = uniq('db');
        assertOk(await t.call('PUT', `/v1/egress-targets/${target}`, { token: admin.token, body: { node: relayA.name, host: '10.1.0.9', port: 5432, allow: [] } }));
        const exTok = await tokenFor(t, ex, 'admin');
        const keep = await issueLease(t, exTok, { kind: 'open', exposure: listed.name });
        const lose = await issueLease(t, exTok, { kind: 'open', exposure: unlisted.name });
        const loseEgress = await issueLease(t, exTok, { kind: 'egress', targets: [target] });
        ({ cursor } = await feed(relayA));
        const patched = await t.call('PATCH', `/v1/users/${ex.name}`, { token: await adminTok(), body: { role: 'member' } });
        assertOk(patched);
        assert.equal(patched.body.role, 'member');
        assert.deepEqual((await feed(relayA, cursor)).ids.sort(), [lose.lease.id, loseEgress.lease.id].sort());
        const kept = await t.call('GET', `/v1/leases/${keep.lease.id}`, { token: await tok(ex) });
        assert.equal(kept.body.revoked_at, null, 'the lease the allow list still grants stays');
      });
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
