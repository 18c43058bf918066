/**
 * GET /v1/connections from relay events: open, close with bytes, a close whose open was lost,
 * replays, members see their own and those to exposures they own, live only while the relay is online and the lease valid,
 * closed rows pruned after the retention. Runs on PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { sql } from 'drizzle-orm';
import { databaseNow, enrollNode, exposeOn, heartbeat, issueLease, putExposure, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { dateBack } from '../testing/date-back.js';
import { CLOSED_RETENTION_MS } from '../services/connections.js';

type User = { id: string; name: string };
type Conn = { session_id: string; lease_id: string | null; user: string | null; kind: string | null; exposure: string | null; live: boolean; closed_at: string | null; bytes_in: number | null; bytes_out: number | null; node: string; remote: string | null };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`connections (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User;
    let bob: User;
    let carol: User;
    let node: TestNode;
    let exposure: string;
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      bob = await t.user(uniq('bob'), 'member');
      carol = await t.user(uniq('carol'), 'member');
      node = await enrollNode(t, await tokenFor(t, admin));
      exposure = uniq('web');
      await putExposure(t, await tokenFor(t, admin), exposure, [bob.name, carol.name]);
      // The relay holds X's expose lease: only then may it report the exposure online (issue 9).
      await exposeOn(t, await tokenFor(t, admin), node, await tokenFor(t, admin), exposure);
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
    });
    const events = async (evs: Record<string, unknown>[]) => {
      const at = t.clock.now().toISOString();
      const res = await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: evs.map((e) => ({ at, ...e })) } });
      assertOk(res, 202);
    };
    const list = async (user: User, role: 'admin' | 'member', query = '') => {
      const res = await t.call('GET', `/v1/connections${query}`, { token: await tokenFor(t, user, role) });
      assertOk(res);
      return res.body.connections as Conn[];
    };

    it('shows a connection from conn_open until conn_close, then with its bytes under state=all', async () => {
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
      const lease = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const sid = uniq('ssh');
      await events([{ type: 'conn_open', lease_id: lease.lease.id, session_id: sid, remote: '198.51.100.7:50000' }]);
      let mine = (await list(admin, 'admin')).filter((c) => c.session_id === sid);
      assert.equal(mine.length, 1);
      assert.deepEqual(
        { user: mine[0]!.user, kind: mine[0]!.kind, exposure: mine[0]!.exposure, live: mine[0]!.live, node: mine[0]!.node, remote: mine[0]!.remote },
        { user: bob.name, kind: 'open', exposure, live: true, node: node.name, remote: '198.51.100.7:50000' },
      );
      // A replayed open changes nothing.
      await events([{ type: 'conn_open', lease_id: lease.lease.id, session_id: sid }]);
      assert.equal((await list(admin, 'admin')).filter((c) => c.session_id === sid).length, 1);

      await events([{ type: 'conn_close', lease_id: lease.lease.id, session_id: sid, bytes_in: 1234, bytes_out: 5_000_000_000 }]);
      assert.equal((await list(admin, 'admin')).filter((c) => c.session_id === sid).length, 0);
      mine = (await list(admin, 'admin', '?state=all')).filter((c) => c.session_id === sid);
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.live, false);
      assert.ok(mine[0]!.closed_at);
      assert.equal(mine[0]!.bytes_in, 1234);
      assert.equal(mine[0]!.bytes_out, 5_000_000_000);
    });

    it('a relay back from a crash closes what its earlier run left open (heartbeat started_at)', async () => {
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
      const lease = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const sid = uniq('ssh');
      await events([{ type: 'conn_open', lease_id: lease.lease.id, session_id: sid }]);
      const hb = async (startedAt?: string) =>
        assertOk(
          await t.call('POST', '/v1/nodes/self/heartbeat', {
            token: node.token,
            body: { version: 'test', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [], ...(startedAt ? { started_at: startedAt } : {}) },
          }),
          200,
        );
      // The run that opened it is still the current one: it stays open and live.
      await hb(new Date(t.clock.now().getTime() - 60_000).toISOString());
      assert.equal((await list(admin, 'admin')).find((c) => c.session_id === sid)?.live, true);
      // The relay restarted (crashed, never sent conn_close): its new run started after the open.
      t.clock.advance(5_000);
      const restarted = t.clock.now().toISOString();
      await hb(restarted);
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
      assert.equal((await list(admin, 'admin')).find((c) => c.session_id === sid), undefined);
      const row = (await list(admin, 'admin', '?state=all')).find((c) => c.session_id === sid);
      assert.equal(row?.closed_at, restarted);
      assert.equal(row?.live, false);
    });

    it('records a close whose open was lost', async () => {
      const sid = uniq('ssh');
      await events([{ type: 'conn_close', session_id: sid, bytes_in: 1, bytes_out: 2 }]);
      const row = (await list(admin, 'admin', '?state=all')).find((c) => c.session_id === sid);
      assert.ok(row?.closed_at);
      assert.equal(row.live, false);
    });

    it('members see only their own connections; scoped service tokens see none', async () => {
      const bobs = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const carols = await issueLease(t, await tokenFor(t, carol, 'member'), { kind: 'open', exposure });
      const [sb, sc] = [uniq('ssh'), uniq('ssh')];
      await events([
        { type: 'conn_open', lease_id: bobs.lease.id, session_id: sb },
        { type: 'conn_open', lease_id: carols.lease.id, session_id: sc },
      ]);
      const seenByBob = (await list(bob, 'member')).map((c) => c.session_id);
      assert.ok(seenByBob.includes(sb));
      assert.ok(!seenByBob.includes(sc));
      assert.ok((await list(bob, 'member')).every((c) => c.user === bob.name));
      const st = await serviceAccess(t, await tokenFor(t, admin), [`expose:${exposure}`]);
      assertProblem(await t.call('GET', '/v1/connections', { token: st.accessToken }), 403, 'SCOPE_DENIED');
    });

    it("a relay cannot report connections under another relay's leases: not linked, not shown to the lease's user", async () => {
      const other = await enrollNode(t, await tokenFor(t, admin));
      await heartbeat(t, other);
      const bobs = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const [forged, real] = [uniq('ssh'), uniq('ssh')];
      const at = t.clock.now().toISOString();
      const res = await t.call('POST', '/v1/nodes/self/events', {
        token: other.token,
        body: { events: [{ type: 'conn_open', at, lease_id: bobs.lease.id, session_id: forged, remote: '203.0.113.66:1' }] },
      });
      assertOk(res, 202);
      await events([{ type: 'conn_open', lease_id: bobs.lease.id, session_id: real }]);
      const seenByBob = (await list(bob, 'member', '?state=all')).map((c) => c.session_id);
      assert.ok(seenByBob.includes(real), 'the relay the lease was issued for is linked');
      assert.ok(!seenByBob.includes(forged), "another relay's claim is not under bob's lease");
      const row = (await list(admin, 'admin', '?state=all')).find((c) => c.session_id === forged);
      assert.equal(row?.lease_id, null);
      assert.equal(row?.user, null);
      assert.equal(row?.node, other.name);
    });

    it("a member who owns an exposure also sees others' connections to it, and nothing of other exposures", async () => {
      const dave = await t.user(uniq('dave'), 'member');
      const daves = uniq('dx');
      await putExposure(t, await tokenFor(t, dave, 'member'), daves, [bob.name]);
      await exposeOn(t, await tokenFor(t, admin), node, await tokenFor(t, dave, 'member'), daves);
      await heartbeat(t, node, [
        { name: exposure, port: 7000 },
        { name: daves, port: 7001 },
      ]);
      const toDave = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure: daves });
      const elsewhere = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const [s1, s2] = [uniq('ssh'), uniq('ssh')];
      await events([
        { type: 'conn_open', lease_id: toDave.lease.id, session_id: s1 },
        { type: 'conn_open', lease_id: elsewhere.lease.id, session_id: s2 },
      ]);
      const seenByDave = (await list(dave, 'member')).map((c) => c.session_id);
      assert.ok(seenByDave.includes(s1), 'the owner sees a connection to their exposure');
      assert.ok(!seenByDave.includes(s2), 'but not one to an exposure of someone else');
      const seenByCarol = (await list(carol, 'member')).map((c) => c.session_id);
      assert.ok(!seenByCarol.includes(s1) && !seenByCarol.includes(s2));
      // The owner sees it but cannot revoke bob's lease: that stays bob's and the admins' business.
      assertProblem(await t.call('DELETE', `/v1/leases/${toDave.lease.id}`, { token: await tokenFor(t, dave, 'member') }), 404, 'NOT_FOUND');
    });

    it('is not live once the lease is revoked or the relay stops reporting', async () => {
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
      const lease = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const sid = uniq('ssh');
      await events([{ type: 'conn_open', lease_id: lease.lease.id, session_id: sid }]);
      const find = async () => (await list(admin, 'admin')).find((c) => c.session_id === sid);
      assert.equal((await find())?.live, true);
      assertOk(await t.call('DELETE', `/v1/leases/${lease.lease.id}`, { token: await tokenFor(t, admin) }), 200);
      assert.equal((await find())?.live, false);

      const other = await issueLease(t, await tokenFor(t, bob, 'member'), { kind: 'open', exposure });
      const sid2 = uniq('ssh');
      await events([{ type: 'conn_open', lease_id: other.lease.id, session_id: sid2 }]);
      t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
      assert.equal((await list(admin, 'admin')).find((c) => c.session_id === sid2)?.live, false);
      await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
    });

    it('prunes closed connections after the retention', async () => {
      const sid = uniq('ssh');
      await events([{ type: 'conn_close', session_id: sid, bytes_in: 0, bytes_out: 0 }]);
      t.clock.advance(CLOSED_RETENTION_MS + 60_000);
      await heartbeat(t, node);
      // The retention goes by the database's clock: the row is dated as old by it as by this replica's.
      await dateBack(t, 'connections', sql`session_id = ${sid}`, t.clock.now().getTime() - (await databaseNow(t)));
      await events([{ type: 'conn_open', session_id: uniq('ssh') }]);
      assert.equal((await list(admin, 'admin', '?state=all&limit=1000')).find((c) => c.session_id === sid), undefined);
    });

    it('refuses unknown and malformed filters', async () => {
      const token = await tokenFor(t, admin);
      assertProblem(await t.call('GET', '/v1/connections?state=closed', { token }), 400, 'VALIDATION_FAILED');
      assertProblem(await t.call('GET', '/v1/connections?limit=0', { token }), 400, 'VALIDATION_FAILED');
      assertProblem(await t.call('GET', '/v1/connections?owner=x', { token }), 400, 'UNKNOWN_FIELD');
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
