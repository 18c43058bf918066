/**
 * POST /v1/leases: node choice, authorization (owner, ACL, scopes), lifetimes, and what is
 * issued (the OpenSSH certificate and the lease token, checked the way a relay checks them).
 * Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { JwksSchema, jwkPublicKeyBytes, JWK_USE_LEASE, JWK_USE_SSH_CA } from '../../protocol/jwks.js';
import { CERT_BACKDATE_SECONDS, LEASE_TOKEN_TYP, LeaseClaimsSchema } from '../../protocol/lease-claims.js';
import { parseCertificate, parseCertificateLine, stringOptionValue, verifyCertificateSignature } from '../../protocol/ssh-cert.js';
import { encodePublicKeyBlob, formatPublicKeyLine, parsePublicKeyLine } from '../../protocol/ssh-key.js';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertNoSecrets, assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, putExposure, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { hostOf, targetsOfBytes } from '../testing/egress-targets.js';
import { EGRESS_TARGETS_MAX_BYTES } from '../../protocol/lease-size.js';
import type { LeaseTarget } from '../../protocol/lease-claims.js';
import { count, eq } from 'drizzle-orm';
import { auditEvents, leases, nodes, rateLimits } from '../db/schema/index.js';
import { signLease } from '../services/leases.js';
import type { UserPrincipal } from '../services/authz.js';
import { AppError } from '../lib/errors.js';

type User = { id: string; name: string; token: string };
const secs = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`POST /v1/leases (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: User, owner: User, friend: User, stranger: User;
    let node: TestNode;
    const exposure = uniq('svc-');
    const tok = (u: User, role: 'admin' | 'member' = 'member') => tokenFor(t, u, role);
    const lease = async (u: User, body: Record<string, unknown>, role: 'admin' | 'member' = 'member') =>
      t.call('POST', '/v1/leases', { token: await tok(u, role), body: { public_key: newClientKey().line, ...body } });

    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      owner = await t.user(uniq('xavier'), 'member');
      friend = await t.user(uniq('yara'), 'member');
      stranger = await t.user(uniq('zed'), 'member');
      node = await enrollNode(t, admin.token);
      await putExposure(t, owner.token, exposure, [friend.name]);
    });

    describe('what is issued', () => {
      it('an OpenSSH user certificate carrying the lease, for the requested key', async () => {
        await heartbeat(t, node);
        const key = newClientKey();
        const res = await t.call('POST', '/v1/leases', { token: await tok(owner), body: { kind: 'expose', exposure, port: 2022, public_key: key.line } });
        assertOk(res, 201);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        const { lease: l, certificate, token, relay } = res.body;
        assert.deepEqual(relay, { node_id: node.id, name: node.name, address: node.address, host_key: node.hostKey });
        assert.equal(l.kind, 'expose');
        assert.equal(l.user, owner.name);
        assert.equal(l.node, node.name);
        assert.equal(l.port, 2022);
        assert.equal(l.ssh_key, key.fingerprint);

        const cert = parseCertificate(parseCertificateLine(certificate));
        assert.equal(cert.type, 'user');
        assert.equal(cert.keyId, l.id);
        assert.deepEqual(cert.principals, [owner.name]);
        assert.equal(cert.serial.toString(), l.serial);
        assert.equal(cert.validAfter, BigInt(secs(l.not_before) - CERT_BACKDATE_SECONDS));
        assert.equal(cert.validBefore, BigInt(secs(l.expires_at)));
        assert.deepEqual(cert.criticalOptions, []);
        assert.deepEqual(cert.extensions.map((e) => e.name), ['lease@tunnel', 'permit-port-forwarding']);
        assert.equal(stringOptionValue(cert.extensions[0]!), token);
        assert.deepEqual(cert.publicKey, parsePublicKeyLine(key.line).publicKey);

        const jwks = JwksSchema.parse((await t.call('GET', '/.well-known/jwks.json')).body);
        const caBlobs = jwks.keys.filter((k) => k.use === JWK_USE_SSH_CA).map((k) => encodePublicKeyBlob(jwkPublicKeyBytes(k)));
        const leaseBlobs = jwks.keys.filter((k) => k.use === JWK_USE_LEASE).map((k) => encodePublicKeyBlob(jwkPublicKeyBytes(k)));
        verifyCertificateSignature(cert, caBlobs);
        assert.throws(() => verifyCertificateSignature(cert, leaseBlobs), { code: 'CERT_UNTRUSTED_CA' });
      });

      it('a lease token that verifies against the published JWKS for the chosen node only', async () => {
        await heartbeat(t, node);
        const key = newClientKey();
        const issued = (await t.call('POST', '/v1/leases', { token: await tok(friend), body: { kind: 'open', exposure, public_key: key.line } })).body;
        const jwks = createLocalJWKSet((await t.call('GET', '/.well-known/jwks.json')).body);
        const opts = { algorithms: ['EdDSA'], issuer: t.deps.settings.issuer, typ: LEASE_TOKEN_TYP, currentDate: t.clock.now() };
        const { payload, protectedHeader } = await jwtVerify(issued.token, jwks, { ...opts, audience: node.id });
        assert.equal(protectedHeader.alg, 'EdDSA');
        const claims = LeaseClaimsSchema.parse(payload);
        assert.equal(claims.sub, friend.id);
        assert.equal(claims.aud, node.id);
        assert.equal(claims.jti, issued.lease.id);
        assert.equal(claims.kind, 'open');
        assert.equal(claims.kind === 'open' && claims.exposure, exposure);
        assert.equal(claims.ssh_key, key.fingerprint);
        assert.equal(claims.name, friend.name);
        assert.equal(claims.nbf, secs(issued.lease.not_before));
        assert.equal(claims.exp, secs(issued.lease.expires_at));
        await assert.rejects(jwtVerify(issued.token, jwks, { ...opts, audience: 'nod_other' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
        await assert.rejects(jwtVerify(issued.token, jwks, { ...opts, audience: node.id, currentDate: new Date(claims.exp * 1000 + 1000) }), {
          code: 'ERR_JWT_EXPIRED',
        });

        const audit = await t.call('GET', '/v1/audit?limit=1000', { token: await tok(admin, 'admin') });
        const ev = audit.body.events.find((e: { type: string; subject: string }) => e.type === 'lease.issued' && e.subject === issued.lease.id);
        assert.equal(ev.data.ssh_key, key.fingerprint);
        assertNoSecrets(audit.body, [issued.token, issued.certificate.split(' ')[1]], 'audit log');
      });

      it('default lifetimes are 3600 s (expose) and 600 s (open, egress); asked lifetimes are capped', async () => {
        await heartbeat(t, node);
        const target = uniq('db');
        assertOk(await t.call('PUT', `/v1/egress-targets/${target}`, { token: await tok(admin, 'admin'), body: { node: node.name, host: '10.0.0.5', port: 5432, allow: [friend.name] } }));
        const life = (l: { not_before: string; expires_at: string }) => secs(l.expires_at) - secs(l.not_before);
        assert.equal(life((await lease(owner, { kind: 'expose', exposure })).body.lease), 3600);
        assert.equal(life((await lease(friend, { kind: 'open', exposure })).body.lease), 600);
        assert.equal(life((await lease(friend, { kind: 'egress', targets: [target] })).body.lease), 600);
        assert.equal(life((await lease(friend, { kind: 'open', exposure, ttl_seconds: 120 })).body.lease), 120);
        const capped = (await lease(owner, { kind: 'expose', exposure, ttl_seconds: 30 * 86400 })).body;
        assert.equal(life(capped.lease), t.deps.settings.maxLeaseTtl);
        const cert = parseCertificate(parseCertificateLine(capped.certificate));
        assert.equal(Number(cert.validBefore - cert.validAfter), t.deps.settings.maxLeaseTtl + CERT_BACKDATE_SECONDS);
        assertProblem(await lease(friend, { kind: 'open', exposure, ttl_seconds: 5 }), 400, 'VALIDATION_FAILED');
      });
    });

    describe('node selection', () => {
      it('expose goes to the online node with the fewest exposures; a pinned node wins', async () => {
        // Every node enrolled so far goes offline; only a and b heartbeat from here on.
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        const a = await enrollNode(t, await tok(admin, 'admin'), uniq('sel-a'));
        const b = await enrollNode(t, await tok(admin, 'admin'), uniq('sel-b'));
        await heartbeat(t, a);
        await heartbeat(t, b);
        const [e1, e2, e3, e4] = [uniq('sel-'), uniq('sel-'), uniq('sel-'), uniq('sel-')];
        for (const e of [e1, e2, e3, e4]) await putExposure(t, await tok(owner), e);
        const place = async (e: string) => (await lease(owner, { kind: 'expose', exposure: e })).body.relay.name;
        assert.equal(await place(e1), a.name, 'tie (0, 0): first by name');
        assert.equal(await place(e2), b.name, 'fewest active exposures (1, 0)');
        assert.equal(await place(e3), a.name, 'tie (1, 1): first by name');
        // a holds 2, b holds 1: unpinned, e4 would go to b.
        assertOk(await t.call('PUT', `/v1/exposures/${e4}`, { token: await tok(admin, 'admin'), body: { node: a.name } }));
        assert.equal(await place(e4), a.name, 'the pinned node wins over load');
        // A pinned node is used even while offline: the operator asked for it.
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        await heartbeat(t, b);
        assert.equal(await place(e4), a.name);
        // Unpinning puts it back on the least loaded online node.
        assertOk(await t.call('PUT', `/v1/exposures/${e4}`, { token: await tok(admin, 'admin'), body: { node: null } }));
        assert.equal(await place(e4), b.name);
      });

      it('avoid_nodes moves an exposure off a relay its client could not reach, while another is online', async () => {
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        const a = await enrollNode(t, await tok(admin, 'admin'), uniq('av-a'));
        const b = await enrollNode(t, await tok(admin, 'admin'), uniq('av-b'));
        await heartbeat(t, a);
        await heartbeat(t, b);
        const e = uniq('av-');
        await putExposure(t, await tok(owner), e, [friend.name]);
        const first = await lease(owner, { kind: 'expose', exposure: e });
        assertOk(first, 201);
        const [held, other] = first.body.relay.node_id === a.id ? [a, b] : [b, a];
        // X is online there (its relay reported it), and a reconnect stays on that relay...
        await heartbeat(t, held, [{ name: e, port: 22 }]);
        assert.equal((await lease(owner, { kind: 'expose', exposure: e })).body.relay.node_id, held.id);
        // ...unless X says that relay just failed: the other online relay is used at once.
        const moved = await lease(owner, { kind: 'expose', exposure: e, avoid_nodes: [held.id] });
        assertOk(moved, 201);
        assert.equal(moved.body.relay.node_id, other.id);
        // A hint only: with no other online relay it is used anyway.
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        await heartbeat(t, held, [{ name: e, port: 22 }]);
        assert.equal((await lease(owner, { kind: 'expose', exposure: e, avoid_nodes: [held.id] })).body.relay.node_id, held.id);
        // Only for expose leases, and only node ids.
        assertProblem(await lease(friend, { kind: 'open', exposure: e, avoid_nodes: [held.id] }), 400, 'LEASE_KIND_MISMATCH');
        assertProblem(await lease(owner, { kind: 'expose', exposure: e, avoid_nodes: ['not an id'] }), 400, 'VALIDATION_FAILED');
      });

      it('NO_NODE_AVAILABLE when no node is online; the lease says where X is for open', async () => {
        t.clock.advance((t.deps.settings.nodeOnlineWindow + 1) * 1000);
        const e = uniq('none-');
        await putExposure(t, await tok(owner), e, [friend.name]);
        assertProblem(await lease(owner, { kind: 'expose', exposure: e }), 503, 'NO_NODE_AVAILABLE');
        assertProblem(await lease(friend, { kind: 'open', exposure: e }), 409, 'EXPOSURE_OFFLINE');
        await heartbeat(t, node);
        const x = await lease(owner, { kind: 'expose', exposure: e });
        assertOk(x, 201);
        const y = await lease(friend, { kind: 'open', exposure: e });
        assertOk(y, 201);
        assert.equal(y.body.relay.node_id, x.body.relay.node_id);
        // Once X's lease is revoked and no relay reports it, the exposure is offline again.
        assertOk(await t.call('DELETE', `/v1/leases/${x.body.lease.id}`, { token: await tok(owner) }));
        assertProblem(await lease(friend, { kind: 'open', exposure: e }), 409, 'EXPOSURE_OFFLINE');
      });
    });

    describe('authorization', () => {
      it('open: owner, ACL members and admins only (NOT_IN_ACL)', async () => {
        await heartbeat(t, node, [{ name: exposure, port: 22 }]);
        assertOk(await lease(friend, { kind: 'open', exposure }), 201);
        assertOk(await lease(owner, { kind: 'open', exposure }), 201);
        assertOk(await lease(admin, { kind: 'open', exposure }, 'admin'), 201);
        const denied = await lease(stranger, { kind: 'open', exposure });
        assertProblem(denied, 403, 'NOT_IN_ACL');
        assertProblem(await lease(stranger, { kind: 'open', exposure: uniq('missing-') }), 404, 'NOT_FOUND');
      });

      it('expose: only the owner or an admin', async () => {
        await heartbeat(t, node);
        assertProblem(await lease(friend, { kind: 'expose', exposure }), 403, 'FORBIDDEN');
        assertOk(await lease(admin, { kind: 'expose', exposure }, 'admin'), 201);
        assertProblem(await lease(owner, { kind: 'expose', exposure: uniq('missing-') }), 404, 'NOT_FOUND');
      });

      it('service tokens act only inside their scopes (SCOPE_DENIED)', async () => {
        await heartbeat(t, node, [{ name: exposure, port: 22 }]);
        const other = uniq('svc-');
        await putExposure(t, await tok(owner), other);
        const x = await serviceAccess(t, await tok(owner), [`expose:${exposure}`]);
        const call = (body: Record<string, unknown>) => t.call('POST', '/v1/leases', { token: x.accessToken, body: { public_key: newClientKey().line, ...body } });
        assertOk(await call({ kind: 'expose', exposure }), 201);
        assertProblem(await call({ kind: 'expose', exposure: other }), 403, 'SCOPE_DENIED');
        assertProblem(await call({ kind: 'open', exposure }), 403, 'SCOPE_DENIED');
        assertProblem(await call({ kind: 'egress', targets: ['anything'] }), 403, 'SCOPE_DENIED');
        const y = await serviceAccess(t, await tok(stranger), ['open:*']);
        const denied = await t.call('POST', '/v1/leases', { token: y.accessToken, body: { kind: 'open', exposure, public_key: newClientKey().line } });
        assertProblem(denied, 403, 'NOT_IN_ACL');
      });

      it('egress: admin-defined targets for the users they allow', async () => {
        const target = uniq('pg');
        const elsewhere = await enrollNode(t, await tok(admin, 'admin'));
        const far = uniq('far');
        const put = async (n: string, body: Record<string, unknown>) =>
          t.call('PUT', `/v1/egress-targets/${n}`, { token: await tok(admin, 'admin'), body });
        assertOk(await put(target, { node: node.name, host: '10.1.0.7', port: 5432, allow: [friend.name] }));
        assertOk(await put(far, { node: elsewhere.name, host: '10.2.0.7', port: 22, allow: [friend.name] }));
        const ok = await lease(friend, { kind: 'egress', targets: [target] });
        assertOk(ok, 201);
        assert.deepEqual(ok.body.lease.targets, [{ host: '10.1.0.7', port: 5432 }]);
        assert.equal(ok.body.relay.node_id, node.id);
        assertProblem(await lease(stranger, { kind: 'egress', targets: [target] }), 403, 'NOT_IN_ACL');
        assertProblem(await lease(friend, { kind: 'egress', targets: [uniq('nope')] }), 404, 'NOT_FOUND');
        assertProblem(await lease(friend, { kind: 'egress', targets: [target, far] }), 400, 'VALIDATION_FAILED');
      });

      describe('egress targets too long together for one certificate (protocol/lease-size.ts)', () => {
        /** Defines `targets` on the node for `friend`; their names. */
        const define = async (targets: LeaseTarget[]) => {
          const names = targets.map(() => uniq('wide-'));
          const token = await tok(admin, 'admin');
          for (const [i, n] of names.entries()) {
            const { host, port } = targets[i]!;
            assertOk(await t.call('PUT', `/v1/egress-targets/${n}`, { token, body: { node: node.name, host, port, allow: [friend.name] } }));
          }
          return names;
        };
        const written = async () => ({
          leases: (await t.deps.db.select({ n: count() }).from(leases))[0]!.n,
          audit: (await t.deps.db.select({ n: count() }).from(auditEvents))[0]!.n,
        });
        /** friend's lease requests counted in the current rate-limit window (http/lease-rate-limit.ts). */
        const leaseAttempts = async () => (await t.deps.db.select({ n: rateLimits.count }).from(rateLimits).where(eq(rateLimits.key, `lease:${friend.id}`)))[0]?.n ?? 0;
        const byHost = (ts: LeaseTarget[]) => [...ts].sort((a, b) => (a.host < b.host ? -1 : 1));

        it(`at the bound (${EGRESS_TARGETS_MAX_BYTES} bytes of hosts and ports): issued, all of them`, async () => {
          const targets = targetsOfBytes(32, EGRESS_TARGETS_MAX_BYTES);
          const res = await lease(friend, { kind: 'egress', targets: await define(targets) });
          assertOk(res, 201);
          assert.deepEqual(byHost(res.body.lease.targets), byHost(targets));
          const claims = LeaseClaimsSchema.parse(JSON.parse(Buffer.from(res.body.token.split('.')[1], 'base64url').toString()));
          assert.deepEqual(claims.kind === 'egress' && byHost(claims.targets), byHost(targets));
        });

        for (const [what, targets] of [
          ['one byte past the bound', targetsOfBytes(32, EGRESS_TARGETS_MAX_BYTES + 1)],
          ['32 hosts of 253 characters', Array.from({ length: 32 }, (_, i) => ({ host: hostOf(253, 'abcdefghijklmnopqrstuvwxyz0123456789'[i]), port: 5432 }))],
        ] as const) {
          it(`${what}: 400 LEASE_TOO_LARGE saying so, and no lease or audit row written`, async () => {
            const names = await define([...targets]);
            const before = await written();
            const attempts = await leaseAttempts();
            const res = await lease(friend, { kind: 'egress', targets: names });
            assertProblem(res, 400, 'LEASE_TOO_LARGE');
            assert.match(res.body.detail, new RegExp(`^targets: these 32 egress targets take \\d+ bytes in the lease, more than the ${EGRESS_TARGETS_MAX_BYTES} .*fewer targets per lease$`));
            assert.deepEqual(await written(), before);
            // As every lease request of a live caller: counted against --lease-rate-limit before the route runs (README).
            assert.equal(await leaseAttempts(), attempts + 1);
          });
        }

        it('signing itself refuses a lease that does not fit as LEASE_TOO_LARGE, not a 500 (signLease, behind the bound)', async () => {
          const [relay] = await t.deps.db.select().from(nodes).where(eq(nodes.id, node.id));
          const key = newClientKey();
          const p: UserPrincipal = { kind: 'user', userId: friend.id, name: friend.name, role: 'member', scopes: null, serviceTokenId: null };
          const targets = targetsOfBytes(32, 32 * 250);
          const signed = signLease(t.deps, p, { kind: 'egress', targets: ['x'], public_key: key.line }, {
            grant: { kind: 'egress', targets },
            node: relay!,
            openPort: null,
            clientKey: parsePublicKeyLine(key.line).publicKey,
            now: t.clock.now(),
          });
          await assert.rejects(signed, (err: unknown) => err instanceof AppError && err.code === 'LEASE_TOO_LARGE' && /would not fit in its certificate/.test(err.message));
        });
      });
    });

    describe('request errors', () => {
      it('refuses mismatched kinds and bad keys', async () => {
        await heartbeat(t, node);
        assertProblem(await lease(owner, { kind: 'expose' }), 400, 'VALIDATION_FAILED');
        assertProblem(await lease(owner, { kind: 'egress' }), 400, 'VALIDATION_FAILED');
        assertProblem(await lease(owner, { kind: 'expose', exposure, targets: ['x'] }), 400, 'LEASE_KIND_MISMATCH');
        assertProblem(await lease(friend, { kind: 'open', exposure, port: 22 }), 400, 'LEASE_KIND_MISMATCH');
        assertProblem(await lease(friend, { kind: 'egress', targets: ['x'], exposure }), 400, 'LEASE_KIND_MISMATCH');
        assertProblem(await lease(owner, { kind: 'relay', exposure }), 400, 'VALIDATION_FAILED');
        assertProblem(await lease(owner, { kind: 'expose', exposure, public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==' }), 400, 'VALIDATION_FAILED');
        assertProblem(await lease(owner, { kind: 'expose', exposure, public_key: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ' }), 400, 'VALIDATION_FAILED');
        // Keys of small order (all zero bytes; the identity, non-canonically): no certificate,
        // on the usual path or the last-seen one (open).
        for (const weak of ['00'.repeat(32), 'ee' + 'ff'.repeat(30) + 'ff']) {
          const public_key = formatPublicKeyLine(Buffer.from(weak, 'hex'));
          for (const [u, body] of [[owner, { kind: 'expose', exposure }], [friend, { kind: 'open', exposure }]] as const) {
            const res = await lease(u, { ...body, public_key });
            assertProblem(res, 400, 'VALIDATION_FAILED');
            assert.match(res.body.detail, /^public_key: .*small order/);
          }
        }
      });
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
