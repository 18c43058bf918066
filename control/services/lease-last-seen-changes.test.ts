/**
 * Attacks on the one-statement open-lease path (services/lease-last-seen.ts): what this replica
 * remembered of a caller and an exposure must never stand in for what changed in the database
 * since, also when the change came from elsewhere (another replica, so nothing here saw it): an
 * admin demoted, the exposure re-created under another owner with another allow list, the relay
 * enrolled again with a new host key, the exposure moved to another relay. Each time the next
 * lease request tries the one statement, which writes nothing, and the usual path answers on the
 * database's state. PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { exposures } from '../db/schema/index.js';

type User = { id: string; name: string; token: string };

function outcomes(t: TestApp): { issued: number; changed: number } {
  const text = t.deps.metrics.render();
  const count = (outcome: string) => Number(new RegExp(`^tunnel_control_lease_last_seen_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { issued: count('issued'), changed: count('changed') };
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`the one-statement lease path after changes it did not see (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, owner: User, friend: User;
    let node: TestNode;
    let exposure: string;
    const open = (token: string) => t.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure, public_key: newClientKey().line } });
    /** Two leases, the second on the one statement: the state is remembered. */
    const twice = async (token: string) => {
      assertOk(await open(token), 201);
      const before = outcomes(t);
      assertOk(await open(token), 201);
      assert.equal(outcomes(t).issued, before.issued + 1, 'the second lease took the one statement');
    };
    /** The next lease: the one statement ran and found the state changed. */
    const next = async (token: string) => {
      const before = outcomes(t);
      const r = await open(token);
      assert.deepEqual(outcomes(t), { ...before, changed: before.changed + 1 });
      return r;
    };

    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('own'), 'member');
      node = await enrollNode(t, admin.token);
    });
    beforeEach(async () => {
      friend = await t.user(uniq('fr'), 'member');
      exposure = uniq('ex-');
      await putExposure(t, owner.token, exposure, [friend.name]);
      await exposeOn(t, admin.token, node, owner.token, exposure);
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
    });

    it('an admin demoted to member is refused where only the admin role let them open', async () => {
      const boss = await t.user(uniq('boss'), 'admin');
      const token = await tokenFor(t, boss, 'admin');
      await twice(token);
      assertOk(await t.call('PATCH', `/v1/users/${boss.name}`, { token: admin.token, body: { role: 'member' } }));
      assertProblem(await next(token), 403, 'NOT_IN_ACL');
    });

    it('the exposure re-created under another owner, without the caller on its allow list, elsewhere', async () => {
      const token = await tokenFor(t, friend, 'member');
      await twice(token);
      const eve = await t.user(uniq('eve'), 'member');
      // As another replica would leave it: same name, node and port, another owner and allow list.
      await t.deps.db.update(exposures).set({ ownerId: eve.id, allow: [] }).where(eq(exposures.name, exposure));
      assertProblem(await next(token), 403, 'NOT_IN_ACL');
    });

    it('the relay enrolled again with a new host key: the lease names the new key', async () => {
      const token = await tokenFor(t, friend, 'member');
      await twice(token);
      const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: admin.token, body: { name: node.name } });
      assertOk(enr, 201);
      const hostKey = newClientKey().line;
      const again = await t.call('POST', '/v1/nodes/enroll', { body: { token: enr.body.token, host_key: hostKey, address: node.address } });
      assertOk(again, 201);
      node = { ...node, token: again.body.node_token, hostKey };
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      const r = await next(token);
      assertOk(r, 201);
      assert.equal(r.body.relay.host_key, hostKey);
    });

    it('the exposure moved to another relay, elsewhere: the lease sends the caller there', async () => {
      const token = await tokenFor(t, friend, 'member');
      await twice(token);
      const other = await enrollNode(t, admin.token);
      await heartbeat(t, other);
      await t.deps.db.update(exposures).set({ currentNodeId: other.id, onlinePort: 2200 }).where(eq(exposures.name, exposure));
      const r = await next(token);
      assertOk(r, 201);
      assert.equal(r.body.relay.node_id, other.id);
      assert.equal(r.body.lease.port, 2200);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
