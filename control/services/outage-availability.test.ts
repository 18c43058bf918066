/**
 * A relay is not judged by time in which the control plane could not reach its database
 * (services/database-outages.ts), on a real Postgres stopped and started again, with the
 * control plane's clock injected: the lab's "Postgres restarted under load" case got 409
 * EXPOSURE_OFFLINE for an exposure whose relay was alive, because its heartbeat, refused 503
 * during the outage, left the last one stored older than the online window once the database was
 * back. A relay that is really gone still reads offline, once the window of time in which the
 * database could be reached has passed since its last heartbeat.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../../test/harness/postgres.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';

type User = { id: string; name: string; token: string };
const unavailable = postgresUnavailableReason();

describe('relays across a database outage (Postgres)', { skip: unavailable }, () => {
  let pg: PostgresInstance;
  let t: TestApp;
  let owner: User;
  let friend: User;
  let node: TestNode;
  const lease = async (u: User, body: Record<string, unknown>) =>
    t.call('POST', '/v1/leases', { token: await tokenFor(t, u, 'member'), body: { public_key: newClientKey().line, ...body } });
  const nodeOnline = async () => {
    const admin = await t.user(uniq('admin'), 'admin');
    const res = await t.call('GET', '/v1/nodes', { token: await tokenFor(t, admin) });
    assertOk(res, 200);
    return (res.body.nodes as { name: string; online: boolean }[]).find((n) => n.name === node.name)?.online;
  };

  before(async () => {
    pg = await startPostgres();
    t = await createTestApp({ databaseUrl: pg.url });
    const admin = await t.user(uniq('admin'), 'admin');
    owner = await t.user(uniq('owner'), 'member');
    friend = await t.user(uniq('friend'), 'member');
    node = await enrollNode(t, await tokenFor(t, admin));
  });
  after(async () => {
    await t?.close();
    await pg?.stop();
  });

  it('a heartbeat refused during the outage does not make the relay read offline after it; a relay really gone still does', async () => {
    const window = t.deps.settings.nodeOnlineWindow;
    const e = uniq('outage-');
    await putExposure(t, await tokenFor(t, owner, 'member'), e, [friend.name]);
    await heartbeat(t, node);
    assertOk(await lease(owner, { kind: 'expose', exposure: e }), 201); // the relay may report only what it holds a lease for
    await heartbeat(t, node, [{ name: e, port: 22 }]);
    assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
    const friendToken = await tokenFor(t, friend, 'member');

    // Two thirds of the window later the database goes away for half a window. The relay's
    // heartbeat is refused, and so is each retry of it (every 3 s: node/heartbeat-retry.ts waits
    // at most 4 s), and Y's open: this replica sees one outage through them.
    t.clock.advance(((window * 2) / 3) * 1000);
    await pg.pause();
    const outageEnd = t.clock.now().getTime() + (window / 2) * 1000;
    for (;;) {
      const refused = await t.call('POST', '/v1/nodes/self/heartbeat', {
        token: node.token,
        body: { version: 'test', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [{ name: e, port: 22 }] },
      });
      assertProblem(refused, 503, 'DATABASE_UNAVAILABLE');
      if (t.clock.now().getTime() >= outageEnd) break;
      t.clock.advance(Math.min(3000, outageEnd - t.clock.now().getTime()));
    }
    const during = await t.call('POST', '/v1/leases', { token: friendToken, body: { public_key: newClientKey().line, kind: 'open', exposure: e } });
    assertProblem(during, 503, 'DATABASE_UNAVAILABLE');
    assert.equal(t.deps.databaseOutages.count, 1);
    await pg.resume();

    // Back: the last heartbeat stored is older than the window, but most of that time the
    // database could not be reached. Online, and Y's open is issued (was: 409 EXPOSURE_OFFLINE).
    assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
    assert.equal(await nodeOnline(), true);

    // The relay never reports again: once the window's worth of reachable time has passed since
    // its last heartbeat (two thirds before the outage, the rest after it), it is offline.
    t.clock.advance(((window * 1) / 3 + 1) * 1000);
    assertProblem(await lease(friend, { kind: 'open', exposure: e }), 409, 'EXPOSURE_OFFLINE');
    assert.equal(await nodeOnline(), false);
    // Its next heartbeat brings it back.
    await heartbeat(t, node, [{ name: e, port: 22 }]);
    assertOk(await lease(friend, { kind: 'open', exposure: e }), 201);
  });
});
