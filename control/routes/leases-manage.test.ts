/**
 * GET /v1/leases, GET /v1/leases/{id} and DELETE /v1/leases/{id} (revocation).
 * Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { databaseNow, enrollNode, exposeOn, heartbeat, issueLease, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { REVOKED_AFTER_EXPIRY_MS } from '../services/lease-revocation.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`managing leases (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, owner: User, friend: User;
    let node: TestNode;
    const exposure = uniq('mg-');
    const tok = (u: User, role: 'admin' | 'member' = 'member') => tokenFor(t, u, role);
    const expose = async (u: User = owner) => {
      await heartbeat(t, node);
      return issueLease(t, await tok(u), { kind: 'expose', exposure });
    };

    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('olive'), 'member');
      friend = await t.user(uniq('finn'), 'member');
      node = await enrollNode(t, admin.token);
      await putExposure(t, owner.token, exposure, [friend.name]);
    });

    it('GET /v1/leases/{id}: your own lease; another user\'s lease is 404; admins see all', async () => {
      const l = await expose();
      const mine = await t.call('GET', `/v1/leases/${l.lease.id}`, { token: await tok(owner) });
      assertOk(mine);
      assert.deepEqual(mine.body, l.lease);
      assertProblem(await t.call('GET', `/v1/leases/${l.lease.id}`, { token: await tok(friend) }), 404, 'NOT_FOUND');
      assertOk(await t.call('GET', `/v1/leases/${l.lease.id}`, { token: await tok(admin, 'admin') }));
      assertProblem(await t.call('GET', `/v1/leases/lse_${'0'.repeat(32)}`, { token: await tok(owner) }), 404, 'NOT_FOUND');
      assertProblem(await t.call('GET', '/v1/leases/not-a-lease', { token: await tok(owner) }), 400, 'VALIDATION_FAILED');
    });

    it('GET /v1/leases: your leases, newest first; active=true drops revoked and expired; all=true is for admins', async () => {
      const u = await t.user(uniq('lister'), 'member');
      await putExposure(t, await tok(u), uniq('ls-'));
      const e = uniq('ls-');
      await putExposure(t, await tok(u), e);
      await heartbeat(t, node);
      const short = await issueLease(t, await tok(u), { kind: 'expose', exposure: e, ttl_seconds: 60 });
      t.clock.advance(1000);
      const revoked = await issueLease(t, await tok(u), { kind: 'expose', exposure: e });
      t.clock.advance(1000);
      const live = await issueLease(t, await tok(u), { kind: 'expose', exposure: e });
      assertOk(await t.call('DELETE', `/v1/leases/${revoked.lease.id}`, { token: await tok(u) }));
      t.clock.advance(61_000);

      const ids = async (q: string, who: User = u, role: 'admin' | 'member' = 'member') => {
        const res = await t.call('GET', `/v1/leases${q}`, { token: await tok(who, role) });
        assertOk(res);
        return res.body.leases.map((l: { id: string }) => l.id);
      };
      assert.deepEqual(await ids(''), [live.lease.id, revoked.lease.id, short.lease.id]);
      assert.deepEqual(await ids('?active=true'), [live.lease.id]);
      assert.deepEqual(await ids('?limit=1'), [live.lease.id]);
      assert.ok(!(await ids('', owner)).includes(live.lease.id), "others' leases are not listed");
      assertProblem(await t.call('GET', '/v1/leases?all=true', { token: await tok(u) }), 403, 'FORBIDDEN');
      assert.ok((await ids('?all=true&limit=500', admin, 'admin')).includes(live.lease.id));
      assertProblem(await t.call('GET', '/v1/leases?limit=0', { token: await tok(u) }), 400, 'VALIDATION_FAILED');
    });

    it('DELETE /v1/leases/{id}: revokes once, feeds the relay, and hides other users\' leases', async () => {
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      const l = await expose();
      assertProblem(await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(friend) }), 404, 'NOT_FOUND');
      const res = await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) });
      assertOk(res);
      assert.equal(res.body.revoked_at, t.clock.now().toISOString());
      t.clock.advance(5000);
      const again = await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) });
      assertOk(again);
      assert.equal(again.body.revoked_at, res.body.revoked_at, 'revoking again changes nothing');
      const feed = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}`, { token: node.token });
      assert.deepEqual(feed.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);

      const byAdmin = await expose();
      assertOk(await t.call('DELETE', `/v1/leases/${byAdmin.lease.id}`, { token: await tok(admin, 'admin') }));
      const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await tok(admin, 'admin') });
      const ev = audit.body.events.find((e: { type: string; subject: string }) => e.type === 'lease.revoked' && e.subject === byAdmin.lease.id);
      assert.equal(ev.actor, admin.id);
    });

    it('a long poll of the feed (?wait=) is answered by the revocation itself, cursor unchanged; then the database has it', async () => {
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      const l = await expose();
      const polling = t.call('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: node.token });
      while (t.deps.revocationHub.waiting === 0) await new Promise((r) => setImmediate(r));
      assertOk(await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) }));
      const res = await polling;
      assertOk(res);
      const entry = { lease_id: l.lease.id, exp: Math.floor(Date.parse(l.lease.expires_at) / 1000) };
      if (name === 'pglite') {
        // Handed over by the hub: the poll's database read ran before the DELETE (one connection,
        // in order); had it waited out its 20 s, it would have read the database, moving the cursor.
        assert.deepEqual(res.body, { cursor, revocations: [entry] });
      } else {
        // On Postgres the poll's read may run after the DELETE committed (another connection).
        assert.deepEqual(res.body.revocations, [entry]);
      }
      const next = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: node.token });
      assert.deepEqual(next.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
      assert.notEqual(next.body.cursor, cursor);
      assert.equal(t.deps.revocationHub.waiting, 0);
      assertProblem(await t.call('GET', `/v1/nodes/self/revocations?wait=26`, { token: node.token }), 400, 'VALIDATION_FAILED');
    });

    it('a long poll held with a node credential replaced since (the node enrolled again) ends in 401 without the revocation', async () => {
      const old = await enrollNode(t, admin.token);
      const e = uniq('re-');
      await putExposure(t, owner.token, e);
      await heartbeat(t, old);
      const l = await issueLease(t, await tok(owner), { kind: 'expose', exposure: e, avoid_nodes: [node.id] });
      assert.equal(l.relay.node_id, old.id);
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: old.token })).body.cursor;
      const polling = t.call('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: old.token });
      while (t.deps.revocationHub.waiting === 0) await new Promise((r) => setImmediate(r));
      // The node enrolls again under its name (a new host, or a leaked credential replaced): same id, new credential.
      const again = await enrollNode(t, admin.token, old.name);
      assert.equal(again.id, old.id);
      assertOk(await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) }));
      const res = await polling;
      assertProblem(res, 401, 'TOKEN_INVALID');
      assertProblem(await t.call('GET', '/v1/nodes/self/revocations', { token: old.token }), 401, 'TOKEN_INVALID');
      // The new credential is not affected: its poll has the revocation.
      const fresh = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: again.token });
      assertOk(fresh);
      assert.deepEqual(fresh.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
    });

    it('a cursor beyond the feed (the database restored from a backup, a relay state file from another database) is moved back, so no later revocation is skipped', async () => {
      const future = '999999999999999';
      for (const q of [`after=${future}`, `after=${future}&wait=20`]) {
        const res = await t.call('GET', `/v1/nodes/self/revocations?${q}`, { token: node.token });
        assertOk(res);
        assert.ok(BigInt(res.body.cursor) < BigInt(future), `cursor kept at ${res.body.cursor}`);
        const e = uniq('fut-');
        await putExposure(t, owner.token, e);
        await heartbeat(t, node);
        const l = await exposeOn(t, await tok(admin, 'admin'), node, await tok(owner), e);
        assert.equal(l.relay.node_id, node.id);
        assertOk(await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) }));
        const next = await t.call('GET', `/v1/nodes/self/revocations?after=${res.body.cursor}`, { token: node.token });
        assert.ok(next.body.revocations.some((r: { lease_id: string }) => r.lease_id === l.lease.id), JSON.stringify(next.body));
      }
    });

    // The relay decides expiry by its own clock. A grant removed on a replica whose clock runs 30 s
    // ahead of the relay's: the lease that has 20 s left there is revoked, and reaches the feed.
    it('a grant removed on a replica whose clock runs ahead of the relay revokes the lease the relay still accepts', async () => {
      const u = await t.user(uniq('late'), 'member');
      const mine = uniq('mg-');
      await putExposure(t, await tok(u), mine);
      await heartbeat(t, node);
      assertOk(await t.call('PUT', `/v1/exposures/${mine}`, { token: await tok(admin, 'admin'), body: { allow: [], node: node.name } }));
      const l = await issueLease(t, await tok(u), { kind: 'expose', exposure: mine, ttl_seconds: 600 });
      assert.equal(l.relay.node_id, node.id);
      t.clock.advance(610_000);
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await tok(admin, 'admin') }));
      const lease = await t.call('GET', `/v1/leases/${l.lease.id}`, { token: await tok(admin, 'admin') });
      assert.equal(lease.body.revoked_at, t.clock.now().toISOString());
      const feed = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}`, { token: node.token });
      assert.deepEqual(feed.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
    });

    // A replica whose clock runs over the allowed skew ahead (NTP broken on one machine): by its
    // clock the lease expired 100 s ago, by the database's (and the relay's) it has minutes left.
    // Its removal of the grant must revoke it: the relay would accept it to the end.
    it('a grant removed on a replica whose clock runs minutes ahead revokes the leases still live by the database\'s clock', async () => {
      const u = await t.user(uniq('ahead'), 'member');
      const mine = uniq('mg-');
      await putExposure(t, await tok(u), mine);
      await heartbeat(t, node);
      assertOk(await t.call('PUT', `/v1/exposures/${mine}`, { token: await tok(admin, 'admin'), body: { allow: [], node: node.name } }));
      // This suite's clock may be ahead of the database's already: skew it from there.
      t.clock.set(new Date(Math.max(t.clock.now().getTime(), await databaseNow(t))));
      const l = await issueLease(t, await tok(u), { kind: 'expose', exposure: mine, ttl_seconds: 600 });
      t.clock.set(new Date(Date.parse(l.lease.expires_at) + REVOKED_AFTER_EXPIRY_MS + 40_000));
      assert.ok(Date.parse(l.lease.expires_at) > (await databaseNow(t)) + 60_000, 'the lease has over a minute left by the database\'s clock');
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await tok(admin, 'admin') }));
      const lease = await t.call('GET', `/v1/leases/${l.lease.id}`, { token: await tok(admin, 'admin') });
      assert.equal(lease.body.revoked_at, t.clock.now().toISOString());
      const feed = await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}`, { token: node.token });
      assert.deepEqual(feed.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
    });

    // A relay's clock may lag by the skew a certificate's start is allowed (60 s): a lease expired
    // less long ago by the database's clock may still be accepted there, and is revoked.
    it('a lease expired longer than the allowed clock skew ago is not revoked and adds nothing to the feed', async () => {
      const l = await expose();
      t.clock.advance(3600_000 + REVOKED_AFTER_EXPIRY_MS + 1000);
      // Expired that long ago by the database's clock too, which judges it (this replica's may be off).
      await t.deps.db.execute(
        sql`update leases set expires_at = now() - ${`${REVOKED_AFTER_EXPIRY_MS + 1000} milliseconds`}::interval where id = ${l.lease.id}`,
      );
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      const res = await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: await tok(owner) });
      assertOk(res);
      assert.equal(res.body.revoked_at, null);
      assert.deepEqual((await t.call('GET', `/v1/nodes/self/revocations?after=${cursor}`, { token: node.token })).body.revocations, []);
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
