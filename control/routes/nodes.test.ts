/**
 * Relay nodes: enrollment tokens, one-time enrollment, the node list, heartbeats, the
 * revocation feed (with cursor resume) and connection events. Runs on PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { formatPublicKeyLine } from '../../protocol/ssh-key.js';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertNoSecrets, assertOk, assertProblem } from '../testing/problem.js';
import { databaseNow, enrollNode, exposeOn, heartbeat, issueLease, newClientKey, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';

type User = { id: string; name: string; token: string };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`nodes (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User;
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
    });
    const adminToken = () => tokenFor(t, admin);
    const feed = (node: TestNode, after?: string) =>
      t.call('GET', `/v1/nodes/self/revocations${after === undefined ? '' : `?after=${after}`}`, { token: node.token });

    describe('enrollment', () => {
      it('an enrollment token enrolls exactly one node', async () => {
        const name = uniq('relay');
        const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name, ttl_seconds: 600 } });
        assertOk(enr, 201);
        assert.equal(enr.body.name, name);
        assert.equal(new Date(enr.body.expires_at).getTime(), t.clock.now().getTime() + 600_000);
        const body = { token: enr.body.token, host_key: newClientKey().line, address: '192.0.2.10:2222' };
        const res = await t.call('POST', '/v1/nodes/enroll', { body });
        assertOk(res, 201);
        assert.match(res.body.node_id, /^nod_/);
        assert.equal(res.body.name, name);
        assert.equal(res.body.issuer, t.deps.settings.issuer);
        assert.match(res.body.node_token, /^tnl_node_/);

        const second = await t.call('POST', '/v1/nodes/enroll', { body: { ...body, host_key: newClientKey().line } });
        assertProblem(second, 401, 'INVALID_CREDENTIALS');
        assertNoSecrets(second.body, [enr.body.token], 'problem body');

        const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await adminToken() });
        assert.ok(audit.body.events.some((e: { type: string; subject: string }) => e.type === 'node.enrolled' && e.subject === res.body.node_id));
        assertNoSecrets(audit.body, [enr.body.token, res.body.node_token], 'audit log');
      });

      it('two concurrent enrollments with one token: exactly one succeeds', async () => {
        const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name: uniq('relay') } });
        const enroll = () => t.call('POST', '/v1/nodes/enroll', { body: { token: enr.body.token, host_key: newClientKey().line, address: 'r.test:2222' } });
        const results = await Promise.all([enroll(), enroll()]);
        assert.deepEqual(results.map((r) => r.status).sort(), [201, 401]);
      });

      it('refuses expired and unknown tokens and bad host keys or addresses', async () => {
        const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name: uniq('relay'), ttl_seconds: 60 } });
        const good = { token: enr.body.token, host_key: newClientKey().line, address: 'relay.test:2222' };
        assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: { ...good, token: 'tnl_enr_unknown' } }), 401, 'INVALID_CREDENTIALS');
        assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: { ...good, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==' } }), 400, 'VALIDATION_FAILED');
        assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: { ...good, host_key: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ' } }), 400, 'VALIDATION_FAILED');
        // A host key of small order: anyone could sign as that relay to the clients pinning it.
        const weak = await t.call('POST', '/v1/nodes/enroll', { body: { ...good, host_key: formatPublicKeyLine(Buffer.alloc(32)) } });
        assertProblem(weak, 400, 'VALIDATION_FAILED');
        assert.match(weak.body.detail, /^host_key: .*small order/);
        assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: { ...good, address: 'no port here' } }), 400, 'VALIDATION_FAILED');
        t.clock.advance(61_000);
        assertProblem(await t.call('POST', '/v1/nodes/enroll', { body: good }), 401, 'INVALID_CREDENTIALS');
        assertProblem(
          await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name: 'Bad_Name' } }),
          400,
          'VALIDATION_FAILED',
        );
      });

      it('re-enrolling under the same name keeps the id and replaces the credential', async () => {
        const first = await enrollNode(t, await adminToken());
        const again = await enrollNode(t, await adminToken(), first.name);
        assert.equal(again.id, first.id);
        assertProblem(await t.call('POST', '/v1/nodes/self/heartbeat', {
          token: first.token,
          body: { version: 't', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [] },
        }), 401, 'TOKEN_INVALID');
        await heartbeat(t, again);
      });

      // An enrollment token enrolls a relay, or takes over the enrolled relay of its name (its key,
      // address and credential replaced: every lease for it then goes to the new one). That power
      // was its admin's role: an admin demoted or disabled no longer has it through a token they
      // made before, whether it is used after the change or after they are an admin again.
      it('the unused enrollment tokens of an admin demoted or disabled stop working at once, and stay dead', async () => {
        for (const [change, body, restore] of [
          ['demoted', { role: 'member' }, { role: 'admin' }],
          ['disabled', { disabled: true }, { disabled: false }],
        ] as const) {
          const a = await t.user(uniq('adm'), 'admin');
          const existing = await enrollNode(t, await adminToken());
          const made = async (name: string) => {
            const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await tokenFor(t, a), body: { name, ttl_seconds: 7 * 86400 } });
            assertOk(enr, 201);
            return enr.body.token as string;
          };
          const takeover = await made(existing.name);
          const fresh = await made(uniq('relay'));
          const kept = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await adminToken(), body: { name: uniq('relay') } });
          assertOk(await t.call('PATCH', `/v1/users/${a.name}`, { token: await adminToken(), body }), 200);
          const enroll = (token: string) => t.call('POST', '/v1/nodes/enroll', { body: { token, host_key: newClientKey().line, address: 'evil.test:2222' } });
          assertProblem(await enroll(takeover), 401, 'INVALID_CREDENTIALS');
          assertProblem(await enroll(fresh), 401, 'INVALID_CREDENTIALS');
          // The relay of that name keeps its credential; another admin's token still enrolls.
          await heartbeat(t, existing);
          assertOk(await enroll(kept.body.token), 201);
          const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await adminToken() });
          const withdrawn = audit.body.events.find((e: { type: string; subject: string }) => e.type === 'node.enrollment_tokens_withdrawn' && e.subject === a.name);
          assert.ok(withdrawn, `the withdrawal is audited (${change})`);
          assert.equal(withdrawn.data.count, 2);
          // Made an admin again: the tokens stay withdrawn.
          assertOk(await t.call('PATCH', `/v1/users/${a.name}`, { token: await adminToken(), body: restore }), 200);
          assertProblem(await enroll(takeover), 401, 'INVALID_CREDENTIALS');
          await heartbeat(t, existing);
        }
      });

      // Nothing bounds how many enrollment tokens an admin makes, nor deletes expired ones: the
      // withdrawal's audit row lists a bounded number of names, and expired tokens (which enroll
      // nothing) are neither withdrawn nor counted.
      it('a withdrawal audits how many tokens, lists at most 20 names, and leaves expired tokens out', async () => {
        const a = await t.user(uniq('adm'), 'admin');
        const make = async (name: string, ttl: number) =>
          assertOk(await t.call('POST', '/v1/nodes/enrollment-tokens', { token: await tokenFor(t, a), body: { name, ttl_seconds: ttl } }), 201);
        const old = uniq('aaa-old');
        await make(old, 60);
        t.clock.advance(61_000);
        const names = Array.from({ length: 25 }, (_, i) => `${uniq('relay')}-${String(i).padStart(2, '0')}`);
        for (const name of names) await make(name, 3600);
        assertOk(await t.call('PATCH', `/v1/users/${a.name}`, { token: await adminToken(), body: { role: 'member' } }), 200);
        const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await adminToken() });
        const withdrawn = audit.body.events.find((e: { type: string; subject: string }) => e.type === 'node.enrollment_tokens_withdrawn' && e.subject === a.name);
        assert.ok(withdrawn);
        assert.equal(withdrawn.data.count, 25, 'the expired token is not counted');
        assert.equal(withdrawn.data.names.length, 20);
        assert.ok(!withdrawn.data.names.includes(old), 'the expired token is not named');
      });
    });

    describe('GET /v1/nodes and heartbeats', () => {
      it('lists nodes with host key, address and online status from heartbeats', async () => {
        const node = await enrollNode(t, await adminToken());
        const member = await t.user(uniq('mem'), 'member');
        const find = async () => {
          const res = await t.call('GET', '/v1/nodes', { token: await tokenFor(t, member, 'member') });
          assertOk(res);
          return res.body.nodes.find((n: { id: string }) => n.id === node.id);
        };
        const before = await find();
        assert.equal(before.host_key, node.hostKey);
        assert.equal(before.address, node.address);
        assert.equal(before.online, false);
        assert.equal(before.last_seen_at, null);
        assert.equal(before.egress_driver, null);
        await heartbeat(t, node);
        const online = await find();
        assert.equal(online.online, true);
        assert.equal(online.last_seen_at, t.clock.now().toISOString());
        // What the node reported: operators see a relay whose egress lock is off.
        assert.equal(online.egress_driver, 'iptables');
        assert.equal(online.native_crypto, true);
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        assert.equal((await find()).online, false);
      });

      it("the heartbeat's exposure list is the truth for that node", async () => {
        const node = await enrollNode(t, await adminToken());
        const owner = await t.user(uniq('own'), 'member');
        const a = uniq('hb-');
        const b = uniq('hb-');
        await putExposure(t, owner.token, a);
        await putExposure(t, owner.token, b);
        await exposeOn(t, await adminToken(), node, owner.token, a);
        await exposeOn(t, await adminToken(), node, owner.token, b);
        const get = async (n: string) => (await t.call('GET', `/v1/exposures/${n}`, { token: await tokenFor(t, owner, 'member') })).body;
        await heartbeat(t, node, [{ name: a, port: 22 }, { name: b, port: 80 }]);
        assert.deepEqual([(await get(a)).online, (await get(a)).node, (await get(b)).online], [true, node.name, true]);
        await heartbeat(t, node, [{ name: b, port: 80 }]);
        assert.equal((await get(a)).online, false);
        assert.equal((await get(b)).online, true);
        await heartbeat(t, node, []);
        assert.equal((await get(b)).online, false);
      });
    });

    describe('revocation feed', () => {
      it('lists revoked leases of this node after a cursor, and resumes from it', async () => {
        const node = await enrollNode(t, await adminToken());
        const other = await enrollNode(t, await adminToken());
        const owner = await t.user(uniq('own'), 'member');
        const exposure = uniq('rv-');
        await putExposure(t, owner.token, exposure);
        await t.call('PUT', `/v1/exposures/${exposure}`, { token: await adminToken(), body: { allow: [], node: node.name } });

        const start = await feed(node);
        assertOk(start);
        assert.deepEqual(start.body.revocations, []);
        const cursor0 = start.body.cursor as string;
        assert.match(cursor0, /^\d+$/);

        const ownerToken = await tokenFor(t, owner, 'member');
        const l1 = await issueLease(t, ownerToken, { kind: 'expose', exposure });
        const l2 = await issueLease(t, ownerToken, { kind: 'expose', exposure });
        const l3 = await issueLease(t, ownerToken, { kind: 'expose', exposure });
        for (const l of [l1, l2]) assertOk(await t.call('DELETE', `/v1/leases/${l.lease.id}`, { token: ownerToken }));

        const page1 = await feed(node, cursor0);
        assert.deepEqual(
          page1.body.revocations,
          [l1, l2].map((l) => ({ lease_id: l.lease.id, exp: Math.floor(new Date(l.lease.expires_at).getTime() / 1000) })),
        );
        assert.deepEqual((await feed(node, page1.body.cursor)).body, { cursor: page1.body.cursor, revocations: [] });
        assert.deepEqual((await feed(other)).body.revocations, [], "another node does not see this node's revocations");

        // Revoking again is a no-op and adds nothing to the feed.
        assertOk(await t.call('DELETE', `/v1/leases/${l1.lease.id}`, { token: ownerToken }));
        assertOk(await t.call('DELETE', `/v1/leases/${l3.lease.id}`, { token: ownerToken }));
        const page2 = await feed(node, page1.body.cursor);
        assert.deepEqual(page2.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l3.lease.id]);
        assert.ok(Number(page2.body.cursor) > Number(page1.body.cursor));

        // Once a revoked lease has expired anyway (an hour ago by the database's clock, which
        // judges it: this replica's may be off), the feed stops listing it.
        t.clock.advance(2 * 3600 * 1000);
        await t.deps.db.execute(sql`update revocations set expires_at = now() - interval '2 hours' where node_id = ${node.id}`);
        assert.deepEqual((await feed(node, cursor0)).body.revocations, []);
        assertProblem(await t.call('GET', '/v1/nodes/self/revocations?after=-1', { token: node.token }), 400, 'VALIDATION_FAILED');
      });

      // The relay decides whether a lease has expired, by its own clock; the feed's cursor moves
      // past every entry a page read, sent or not. A replica whose clock runs ahead (an hour, say:
      // NTP broken on one machine) must not read a revocation another replica made as expired and
      // move the relay's cursor past it: the relay, whose clock is right, would accept the lease
      // until it really expires, the removed grant working all that time.
      it('a replica whose clock runs ahead still hands over the revocations its page reads past', async () => {
        const node = await enrollNode(t, await adminToken());
        const owner = await t.user(uniq('own'), 'member');
        const exposure = uniq('rv-');
        await putExposure(t, owner.token, exposure);
        await t.call('PUT', `/v1/exposures/${exposure}`, { token: await adminToken(), body: { allow: [], node: node.name } });
        const cursor0 = (await feed(node)).body.cursor as string;
        const l = await issueLease(t, await tokenFor(t, owner, 'member'), { kind: 'expose', exposure, ttl_seconds: 1800 });
        assertOk(await t.call('DELETE', `/v1/users/${owner.name}`, { token: await adminToken() }));
        // Read through a replica whose clock is 40 minutes ahead: the lease has 30 minutes left.
        t.clock.advance(40 * 60_000);
        const page = await feed(node, cursor0);
        assertOk(page);
        assert.ok(Number(page.body.cursor) > Number(cursor0));
        assert.deepEqual(page.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
      });

      // Further ahead than the feed's retention (an hour): by that replica's clock the lease
      // expired 90 minutes ago; by the database's it has most of its 30 minutes left. Whether the
      // relay may still need an entry is judged by the database's clock, as the prune judges it.
      it("a replica whose clock runs hours ahead still hands over the revocations of leases live by the database's clock", async () => {
        const node = await enrollNode(t, await adminToken());
        const owner = await t.user(uniq('own'), 'member');
        const exposure = uniq('rv-');
        await putExposure(t, owner.token, exposure);
        await t.call('PUT', `/v1/exposures/${exposure}`, { token: await adminToken(), body: { allow: [], node: node.name } });
        const cursor0 = (await feed(node)).body.cursor as string;
        // This suite's clock may be ahead of the database's already: the lease is issued at the database's time.
        t.clock.set(new Date(Math.max(t.clock.now().getTime(), await databaseNow(t))));
        const l = await issueLease(t, await tokenFor(t, owner, 'member'), { kind: 'expose', exposure, ttl_seconds: 1800 });
        assertOk(await t.call('DELETE', `/v1/users/${owner.name}`, { token: await adminToken() }));
        t.clock.set(new Date(Math.max(t.clock.now().getTime(), await databaseNow(t)) + 2 * 3600_000));
        const page = await feed(node, cursor0);
        assertOk(page);
        assert.ok(Number(page.body.cursor) > Number(cursor0));
        assert.deepEqual(page.body.revocations.map((r: { lease_id: string }) => r.lease_id), [l.lease.id]);
      });
    });

    describe('POST /v1/nodes/self/events', () => {
      it('records connection events in the audit log and applies exposure status', async () => {
        const node = await enrollNode(t, await adminToken());
        const owner = await t.user(uniq('own'), 'member');
        const exposure = uniq('ev-');
        await putExposure(t, owner.token, exposure);
        await exposeOn(t, await adminToken(), node, owner.token, exposure);
        const at = t.clock.now().toISOString();
        const res = await t.call('POST', '/v1/nodes/self/events', {
          token: node.token,
          body: {
            events: [
              { type: 'exposure_online', at, exposure, port: 2022 },
              { type: 'conn_open', at, lease_id: 'lse_x', session_id: 's1', remote: '198.51.100.7:5000' },
              { type: 'conn_close', at, lease_id: 'lse_x', session_id: 's1', bytes_in: 10, bytes_out: 20 },
            ],
          },
        });
        assert.equal(res.status, 202);
        const exp = await t.call('GET', `/v1/exposures/${exposure}`, { token: await tokenFor(t, owner, 'member') });
        assert.equal(exp.body.online, true);
        assert.equal(exp.body.node, node.name);
        assert.equal(exp.body.port, 2022);
        const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await adminToken() });
        const mine = audit.body.events.filter((e: { actor: string }) => e.actor === node.id);
        assert.deepEqual(mine.map((e: { type: string }) => e.type), ['relay.exposure_online', 'relay.conn_open', 'relay.conn_close']);
        assert.equal(mine[2].data.bytes_out, 20);
        assert.equal(mine[2].data.node, node.name);

        await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: [{ type: 'exposure_offline', at, exposure }] } });
        assert.equal((await t.call('GET', `/v1/exposures/${exposure}`, { token: await tokenFor(t, owner, 'member') })).body.online, false);
      });

      it('refuses a malformed envelope with 400', async () => {
        const node = await enrollNode(t, await adminToken());
        const at = t.clock.now().toISOString();
        const post = (body: unknown) => t.call('POST', '/v1/nodes/self/events', { token: node.token, body });
        assertProblem(await post({ events: [] }), 400, 'VALIDATION_FAILED');
        assertProblem(await post({ events: Array.from({ length: 1001 }, () => ({ type: 'conn_open', at })) }), 400, 'VALIDATION_FAILED');
        assertProblem(await post({ events: { type: 'conn_open', at } }), 400, 'VALIDATION_FAILED');
        assertProblem(await post([{ type: 'conn_open', at }]), 400, 'VALIDATION_FAILED');
        assertProblem(await post({ events: [{ type: 'conn_open', at }], more: 1 }), 400, 'UNKNOWN_FIELD');
      });

      it('records the valid events of a batch and refuses the others one by one, counted and audited', async () => {
        const node = await enrollNode(t, await adminToken());
        const at = t.clock.now().toISOString();
        const rejectedCount = (code: string) =>
          Number(new RegExp(`^tunnel_control_relay_events_rejected_total\\{code="${code}"\\} (\\d+)$`, 'm').exec(t.deps.metrics.render())?.[1] ?? 0);
        const before = { invalid: rejectedCount('VALIDATION_FAILED'), unknown: rejectedCount('UNKNOWN_FIELD') };
        // 500 events, four of them outside ConnectionEventSchema (one with a 2,000-character key).
        const good = Array.from({ length: 496 }, (_, i) => ({ type: 'conn_open', at, session_id: `s-${i}` }));
        const events = [
          ...good.slice(0, 10),
          { type: 'reboot', at },
          ...good.slice(10, 250),
          { type: 'conn_open', at, ['k'.repeat(2000)]: 1 },
          ...good.slice(250),
          { type: 'conn_close', at, reason: 'x\u0000y' },
          42,
        ];
        const res = await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events } });
        assert.equal(res.status, 202);
        const rejected = [
          { index: 10, code: 'VALIDATION_FAILED', field: 'type' },
          { index: 251, code: 'UNKNOWN_FIELD' },
          { index: 498, code: 'VALIDATION_FAILED', field: 'reason' },
          { index: 499, code: 'VALIDATION_FAILED' },
        ];
        assert.deepEqual(res.body, { accepted: 496, rejected });

        const audit = async (type: string) => {
          const r = await t.call('GET', `/v1/audit?limit=1000&actor=${node.id}&type=${type}`, { token: await adminToken() });
          assertOk(r);
          return r.body.events as { type: string; data: Record<string, unknown> }[];
        };
        assert.equal(new Set((await audit('relay.conn_open')).map((e) => e.data.session_id)).size, 496, 'every valid event recorded');
        const [entry, ...more] = await audit('relay.events_rejected');
        assert.equal(more.length, 0, 'one audit entry per batch');
        assert.deepEqual(entry!.data, { node: node.name, rejected: 4, accepted: 496, first: rejected });
        assert.doesNotMatch(JSON.stringify(entry), /kkkk/, "the relay's own key names go nowhere");
        assert.equal(rejectedCount('VALIDATION_FAILED') - before.invalid, 3);
        assert.equal(rejectedCount('UNKNOWN_FIELD') - before.unknown, 1);
      });
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
