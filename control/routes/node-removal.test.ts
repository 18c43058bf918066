/**
 * DELETE /v1/nodes/{name} (`tunnel nodes rm`): an admin removes a relay. There was no way to: a
 * lost relay could only be cut off by enrolling another under its name. Removing one ends its
 * credential at once (a poll it holds ends 401; the relay then fails closed), its leases and its
 * unused enrollment tokens; exposures online there go offline. Refused while grants an admin
 * placed on it (a pinned exposure, an egress target) would go with it. Runs on PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, tokenFor, uniq } from '../testing/fixtures.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`removing a relay (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User;
    let owner: User;
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('owner'), 'member');
    });
    const adminToken = () => tokenFor(t, admin);

    it('ends its credential at once, its leases and unused enrollment tokens; its exposures go offline; audited; the name can be enrolled again', async () => {
      const node = await enrollNode(t, await adminToken());
      await heartbeat(t, node);
      const exposure = uniq('svc-');
      await putExposure(t, owner.token, exposure);
      const lease = await exposeOn(t, await adminToken(), node, owner.token, exposure); // pins it to the relay
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      assert.equal((await t.call('GET', `/v1/exposures/${exposure}`, { token: owner.token })).body.online, true);
      const spare = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name: node.name } });
      assertOk(spare, 201);

      // Pinned there: refused, nothing removed.
      const pinned = await t.call('DELETE', `/v1/nodes/${node.name}`, { token: await adminToken() });
      assertProblem(pinned, 409, 'CONFLICT');
      assert.match(pinned.body.detail, new RegExp(`exposures pinned to it \\(${exposure}`));
      assertOk(await t.call('PUT', `/v1/exposures/${exposure}`, { token: await adminToken(), body: { allow: [], node: null } }));

      // A poll the relay holds ends at once, 401, when it is removed.
      const cursor = (await t.call('GET', '/v1/nodes/self/revocations', { token: node.token })).body.cursor;
      const waitingBefore = t.deps.revocationHub.waiting;
      const polling = t.call('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: node.token });
      while (t.deps.revocationHub.waiting === waitingBefore) await new Promise((r) => setImmediate(r));
      const removed = await t.call('DELETE', `/v1/nodes/${node.name}`, { token: await adminToken() });
      assert.equal(removed.status, 204, JSON.stringify(removed.body));
      assertProblem(await polling, 401, 'TOKEN_INVALID');

      // Its credential, its leases, its enrollment token: gone.
      const hb = await t.call('POST', '/v1/nodes/self/heartbeat', {
        token: node.token,
        body: { version: 'test', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [] },
      });
      assert.equal(hb.status, 401);
      const listed = await t.call('GET', '/v1/nodes', { token: await adminToken() });
      assert.equal(listed.body.nodes.some((n: { name: string }) => n.name === node.name), false);
      const leases = await t.call('GET', '/v1/leases?all=true&limit=500', { token: await adminToken() });
      assert.equal(leases.body.leases.some((l: { id: string }) => l.id === lease.lease.id), false);
      assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: { token: spare.body.token, host_key: newClientKey().line, address: 'relay.test:2222' } }), 401, 'INVALID_CREDENTIALS');
      assert.equal((await t.call('GET', `/v1/exposures/${exposure}`, { token: owner.token })).body.online, false);

      const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await adminToken() });
      const entry = audit.body.events.find((e: { type: string; subject: string }) => e.type === 'node.removed' && e.subject === node.id);
      assert.ok(entry, 'audited');
      assert.equal(entry.actor, admin.id);
      assert.deepEqual(entry.data, { name: node.name, address: node.address, live_leases: 1, enrollment_tokens_withdrawn: 1 });

      // The name is free: a new enrollment token for it enrolls a new relay.
      const again = await enrollNode(t, await adminToken(), node.name);
      assert.notEqual(again.id, node.id);
    });

    it('refused with an egress target on it, listing it; 404 for a name no relay has; 403 for members', async () => {
      const node = await enrollNode(t, await adminToken());
      const target = uniq('tg');
      assertOk(await t.call('PUT', `/v1/egress-targets/${target}`, { token: await adminToken(), body: { node: node.name, host: '10.0.0.5', port: 5432, allow: [] } }));
      const res = await t.call('DELETE', `/v1/nodes/${node.name}`, { token: await adminToken() });
      assertProblem(res, 409, 'CONFLICT');
      assert.match(res.body.detail, new RegExp(`egress targets on it \\(${target}`));
      assert.equal((await t.call('GET', '/v1/nodes', { token: await adminToken() })).body.nodes.some((n: { name: string }) => n.name === node.name), true);
      assertProblem(await t.call('DELETE', `/v1/nodes/${uniq('nobody')}`, { token: await adminToken() }), 404, 'NOT_FOUND');
      assertProblem(await t.call('DELETE', `/v1/nodes/${node.name}`, { token: owner.token }), 403, 'FORBIDDEN');
      assertProblem(await t.call('DELETE', '/v1/nodes/Not_A_Name', { token: await adminToken() }), 400, 'VALIDATION_FAILED');
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
