/**
 * Open leases only for an exposure that is there (issue 10): online as its relay reported, or
 * connecting (its expose lease is seconds old and no offline report came since). Abandoned
 * expose leases of a X that went away, and a relay that stopped heartbeating, mean
 * EXPOSURE_OFFLINE. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { CONNECTING_GRACE_SECONDS } from './node-selection.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`open leases and exposure availability (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let owner: User;
    let friend: User;
    let node: TestNode;
    const lease = async (u: User, body: Record<string, unknown>) =>
      t.call('POST', '/v1/leases', { token: await tokenFor(t, u, 'member'), body: { public_key: newClientKey().line, ...body } });
    const events = (events: Record<string, unknown>[]) => t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events } });

    before(async () => {
      t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('owner'), 'member');
      friend = await t.user(uniq('friend'), 'member');
      node = await enrollNode(t, await tokenFor(t, admin));
      await heartbeat(t, node);
    });

    it('connecting: right after the expose lease; then what the relay reports decides', async () => {
      const e = uniq('avail-');
      await putExposure(t, await tokenFor(t, owner, 'member'), e, [friend.name]);
      assertProblem(await lease(friend, { kind: 'open', exposure: e }), 409, 'EXPOSURE_OFFLINE');
      assertOk(await lease(owner, { kind: 'expose', exposure: e, port: 8080 }), 201);
      const connecting = await lease(friend, { kind: 'open', exposure: e });
      assertOk(connecting, 201);
      assert.equal(connecting.body.lease.port, 8080);

      // The relay reports X online, then offline: offline wins although the expose lease is still valid.
      const at = t.clock.now().toISOString();
      assert.equal((await events([{ type: 'exposure_online', at, exposure: e, port: 8080 }])).status, 202);
      assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
      assert.equal((await events([{ type: 'exposure_offline', at, exposure: e, port: 8080 }])).status, 202);
      assertProblem(await lease(friend, { kind: 'open', exposure: e }), 409, 'EXPOSURE_OFFLINE');
    });

    it('abandoned expose leases past the grace period do not make an exposure look online', async () => {
      const e = uniq('abandoned-');
      await putExposure(t, await tokenFor(t, owner, 'member'), e, [friend.name]);
      for (let i = 0; i < 3; i++) assertOk(await lease(owner, { kind: 'expose', exposure: e }), 201);
      t.clock.advance((CONNECTING_GRACE_SECONDS + 1) * 1000);
      await heartbeat(t, node);
      const gone = await lease(friend, { kind: 'open', exposure: e });
      assertProblem(gone, 409, 'EXPOSURE_OFFLINE');
      assert.equal(gone.body.detail, `"${e}" is not online: no tunnel expose is connected`);
    });

    it('online on a relay that stopped heartbeating is offline', async () => {
      const e = uniq('deadrelay-');
      await putExposure(t, await tokenFor(t, owner, 'member'), e, [friend.name]);
      assertOk(await lease(owner, { kind: 'expose', exposure: e }), 201); // the relay may report only what it holds a lease for
      await heartbeat(t, node, [{ name: e, port: 22 }]);
      assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
      t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
      const stale = await lease(friend, { kind: 'open', exposure: e });
      assertProblem(stale, 409, 'EXPOSURE_OFFLINE');
      // Says why: the relay went quiet, not that X left.
      assert.equal(stale.body.detail, `"${e}" is not online: its relay ${node.name} has not reported for ${t.deps.settings.nodeOnlineWindow + 1} s (stopped, or cut off from the control plane); tunnel expose moves to another relay once it notices`);
      await heartbeat(t, node, [{ name: e, port: 22 }]);
      assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
