/**
 * `tunnel leases` shows a connection renewed in band as connected under the lease it holds now.
 * A `tunnel expose` connection renews its lease on the connection (lease-renew@tunnel: the relay
 * reports no event), so the control plane knows it only by the lease it opened with; CONNECTED
 * went by that one, and said "no" for the lease in use once the first had expired. GET
 * /v1/connections now names the lease each connection holds (`current_lease_id`: the newest
 * valid lease of its user for its key on its relay, the rule `live` and the history prune use),
 * and the CLI goes by it. The CLI's run() against the control plane over real HTTP, on PGlite
 * and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, heartbeat, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../../control/testing/fixtures.js';
import { assertOk } from '../../control/testing/problem.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';
import { run } from '../../cli/run.js';
import { testContext } from '../../cli/testing/test-context.js';

const PASSWORD = 'a long enough password';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`tunnel leases: a connection renewed in band is connected under its newest lease (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    let node: TestNode;
    let adminToken: () => Promise<string>;
    before(async () => {
      t = await makeApp();
      s = await serveTestApp(t);
      const admin = await t.user(uniq('admin'), 'admin');
      adminToken = () => tokenFor(t, admin);
      node = await enrollNode(t, admin.token);
    });
    after(() => s?.close());

    it('renewed twice: CONNECTED is yes for the renewal in use and no for the others, while the first lease has expired', async () => {
      const u = await t.user(uniq('x'), 'member', PASSWORD);
      const ctx = testContext({ stdin: `${PASSWORD}\n` });
      assert.equal(await run(['login', '--server', s.url, '--password', '--user', u.name], ctx), 0, ctx.err());
      const exposure = uniq('renewed-');
      await putExposure(t, await tokenFor(t, u, 'member'), exposure);
      const key = newClientKey();
      const lease = async (): Promise<{ id: string; expires_at: string }> => {
        await heartbeat(t, node, [{ name: exposure, port: 7000 }]);
        const r = await s.call('POST', '/v1/leases', { token: await tokenFor(t, u, 'member'), body: { kind: 'expose', exposure, public_key: key.line } });
        assertOk(r, 201);
        return r.body.lease;
      };
      const first = await lease();
      const opened = await s.call('POST', '/v1/nodes/self/events', {
        token: node.token,
        body: { events: [{ type: 'conn_open', at: t.clock.now().toISOString(), session_id: uniq('sess'), lease_id: first.id }] },
      });
      assertOk(opened, 202);
      const connected = async () => {
        const before = ctx.out().length;
        assert.equal(await run(['leases', '--json'], ctx), 0, ctx.err());
        const rows = (JSON.parse(ctx.out().slice(before)) as { leases: { id: string; exposure: string | null; connected: boolean | null }[] }).leases;
        return Object.fromEntries(rows.filter((l) => l.exposure === exposure).map((l) => [l.id, l.connected]));
      };
      assert.deepEqual(await connected(), { [first.id]: true });

      // The CLI renews a minute before each lease expires, on the same connection.
      const renewals: { id: string; expires_at: string }[] = [];
      let last = first;
      for (let i = 0; i < 2; i++) {
        t.clock.set(new Date(Date.parse(last.expires_at) - 60_000));
        last = await lease();
        renewals.push(last);
      }
      const [second, third] = renewals as [typeof first, typeof first];
      assert.ok(Date.parse(first.expires_at) < t.clock.now().getTime(), 'the first lease has expired');
      assert.deepEqual(await connected(), { [second.id]: false, [third.id]: true }, 'the second is still valid for a minute; the third is in use');
      const conns = await s.call('GET', `/v1/connections?state=open&node=${node.name}`, { token: await adminToken() });
      assertOk(conns);
      assert.deepEqual(
        conns.body.connections.map((c: { lease_id: string; current_lease_id: string; live: boolean }) => [c.lease_id, c.current_lease_id, c.live]),
        [[first.id, third.id, true]],
      );

      t.clock.set(new Date(Date.parse(third.expires_at) + 1000));
      await heartbeat(t, node);
      assert.deepEqual(await connected(), {}, 'none active once the last renewal expired');
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
