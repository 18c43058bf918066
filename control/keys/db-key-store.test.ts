/**
 * The database key store: rotation publishes a key before it signs, a retired key stays
 * published until everything it signed has expired, and sealed private keys need the right
 * master key. Runs on PGlite and on a real Postgres (the store takes advisory locks).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { LEASE_TOKEN_TYP } from '../../protocol/lease-claims.js';
import { encodePublicKeyBlob } from '../../protocol/ssh-key.js';
import { parseCertificate, parseCertificateLine, verifyCertificateSignature } from '../../protocol/ssh-cert.js';
import { JWK_USE_SSH_CA, jwkPublicKeyBytes, type Jwks } from '../../protocol/jwks.js';
import { signingKeys } from '../db/schema/index.js';
import { randomIds } from '../lib/ids.js';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import { enrollNode, heartbeat, issueLease, putExposure, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { DEFAULT_KEY_POLICY } from './key-policy.js';
import { DbKeyStore } from './db-key-store.js';
import { open, SealedBoxError } from './sealed-box.js';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`DbKeyStore (${name})`, { skip: makeApp.unavailable }, () => {
    const masterKey = randomBytes(32);
    let t: TestApp;
    let admin: { id: string; name: string; token: string };
    let node: TestNode;
    const exposure = uniq('keys-');

    before(async () => {
      t = await makeApp({ masterKey });
      admin = await t.user(uniq('admin'), 'admin');
      node = await enrollNode(t, admin.token);
      await putExposure(t, admin.token, exposure);
    });

    const jwks = async () => (await t.call('GET', '/.well-known/jwks.json')).body as Jwks;
    const kids = async (use: 'sig' | 'ssh-ca') => (await jwks()).keys.filter((k) => k.use === use).map((k) => k.kid);
    const lease = async (ttl = 3600) => {
      await heartbeat(t, node);
      return issueLease(t, await tokenFor(t, admin), { kind: 'expose', exposure, ttl_seconds: ttl });
    };
    const verifyLease = async (token: string) =>
      jwtVerify(token, createLocalJWKSet(await jwks()), {
        algorithms: ['EdDSA'],
        issuer: t.deps.settings.issuer,
        audience: node.id,
        typ: LEASE_TOKEN_TYP,
        currentDate: t.clock.now(),
      });
    const verifyCert = async (line: string) => {
      const cas = (await jwks()).keys.filter((k) => k.use === JWK_USE_SSH_CA).map((k) => encodePublicKeyBlob(jwkPublicKeyBytes(k)));
      verifyCertificateSignature(parseCertificate(parseCertificateLine(line)), cas);
    };

    it('a rotated lease key is published before it signs; the old one keeps verifying until its last lease expires', async () => {
      const oldKid = (await t.deps.keys.signing('sig')).kid;
      const lead = 300;
      const newKid = await t.deps.keys.rotate('sig', lead);
      assert.notEqual(newKid, oldKid);
      assert.deepEqual((await kids('sig')).sort(), [oldKid, newKid].sort(), 'both published');
      assert.equal((await t.deps.keys.signing('sig')).kid, oldKid, 'the new key does not sign yet');

      // The longest lease the old key can sign, issued the moment before the new key takes over.
      t.clock.advance((lead - 1) * 1000);
      const lastOld = await lease(t.deps.settings.maxLeaseTtl);
      assert.equal(decodeProtectedHeader(lastOld.token).kid, oldKid);
      const accessBefore = await tokenFor(t, admin);

      t.clock.advance(2000);
      assert.equal((await t.deps.keys.signing('sig')).kid, newKid, 'the new key signs after the lead time');
      const next = await lease();
      assert.equal(decodeProtectedHeader(next.token).kid, newKid);
      await verifyLease(next.token);
      await verifyLease(lastOld.token);
      assertOk(await t.call('GET', '/v1/me', { token: accessBefore }), 200);

      // Up to the old lease's last second, relays can still verify it from the JWKS.
      const leaseEnd = new Date(lastOld.lease.expires_at).getTime();
      t.clock.set(new Date(leaseEnd - 1000));
      assert.ok((await kids('sig')).includes(oldKid));
      await verifyLease(lastOld.token);
      // Once everything it signed has expired (plus skew), the old key is withdrawn.
      const [row] = (await t.opened.db.select().from(signingKeys)).filter((r) => r.kid === oldKid);
      assert.ok(row?.expireAt && row.expireAt.getTime() >= leaseEnd + 60_000, 'published at least until its last lease (+ skew) ends');
      t.clock.set(new Date(row.expireAt.getTime() + 1));
      assert.deepEqual(await kids('sig'), [newKid]);
    });

    it('the SSH CA rotates the same way: certificates of the old CA verify while it is published', async () => {
      const oldKid = (await t.deps.keys.signing('ssh-ca')).kid;
      const before = await lease();
      const newKid = await t.deps.keys.rotate('ssh-ca', 60);
      assert.deepEqual((await kids('ssh-ca')).sort(), [oldKid, newKid].sort());
      t.clock.advance(61_000);
      assert.equal((await t.deps.keys.signing('ssh-ca')).kid, newKid);
      const after = await lease();
      await verifyCert(before.certificate);
      await verifyCert(after.certificate);
      const caOf = (line: string) => parseCertificate(parseCertificateLine(line)).signatureKey.toString('base64');
      assert.notEqual(caOf(before.certificate), caOf(after.certificate));
    });

    it('ensure() schedules a successor when a key is due, once', async () => {
      const policy = { ...DEFAULT_KEY_POLICY, rotateAfter: 3600, publishLead: 600 };
      const store = new DbKeyStore({ db: t.opened.db, clock: t.clock, ids: randomIds, masterKey, policy });
      await store.rotate('sig', 0);
      const current = (await store.signing('sig')).kid;
      const count = async () => (await store.published()).filter((k) => k.use === 'sig').length;
      await store.ensure();
      const n0 = await count();
      t.clock.advance(3599_000);
      await store.ensure();
      assert.equal(await count(), n0, 'not due yet');
      t.clock.advance(2000);
      await store.ensure();
      await store.ensure();
      assert.equal(await count(), n0 + 1, 'exactly one successor');
      assert.equal((await store.signing('sig')).kid, current, 'not before the lead time');
      t.clock.advance(601_000);
      assert.notEqual((await store.signing('sig')).kid, current);
    });

    it('private keys are sealed at rest and unreadable with another master key (typed error)', async () => {
      const rows = await t.opened.db.select().from(signingKeys);
      assert.ok(rows.length >= 2);
      for (const r of rows) {
        const der = open(masterKey, r.privateKeySealed, r.kid);
        assert.ok(!Buffer.from(r.privateKeySealed, 'base64url').includes(der.subarray(-32)), 'the private key bytes are not stored in clear');
        assert.throws(() => open(masterKey, r.privateKeySealed, `${r.kid}x`), SealedBoxError, 'bound to its kid');
      }
      const wrong = new DbKeyStore({ db: t.opened.db, clock: t.clock, ids: randomIds, masterKey: randomBytes(32) });
      assert.ok((await wrong.published()).length >= 2, 'public keys need no master key');
      await assert.rejects(wrong.signing('sig'), (err: unknown) => err instanceof SealedBoxError && err.code === 'SEALED_BOX_INVALID');
      await assert.rejects(wrong.signing('ssh-ca'), SealedBoxError);
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
