/**
 * A lease never outlives the service token it was issued through (found by h-attack: a service
 * token made with `ttl_seconds: 60` got an expose lease of 86,400 s, its certificate accepted by
 * the relay for 24 h after the token expired). The lease's expiry, its certificate's valid-before
 * and its token's exp are capped at the service token's `expires_at`, on the usual path and on
 * the one-statement open path (services/lease-last-seen.ts), whose remembered expiry is checked
 * against the database's by the statement. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { decodeJwt } from 'jose';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';
import type { TestApp } from '../testing/test-app.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, tokenFor, uniq } from '../testing/fixtures.js';
import { parseCertificate, parseCertificateLine, stringOptionValue } from '../../protocol/ssh-cert.js';
import { LEASE_CERT_EXTENSION } from '../../protocol/lease-claims.js';
import { leases, serviceTokens } from '../db/schema/index.js';

const secs = (iso: string) => Math.floor(Date.parse(iso) / 1000);

/** How often the one-statement open path issued, and found the state changed, so far. */
function outcomes(t: TestApp): { issued: number; changed: number } {
  const text = t.deps.metrics.render();
  const count = (outcome: string) => Number(new RegExp(`^tunnel_control_lease_last_seen_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { issued: count('issued'), changed: count('changed') };
}

/** The lease answer's three expiries (row, certificate's valid-before, token's exp) are all `at` or earlier, and agree. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
async function assertEndsBy(t: TestApp, issued: any, at: string): Promise<void> {
  const end = secs(at);
  const cert = parseCertificate(parseCertificateLine(issued.certificate as string));
  const ext = cert.extensions.find((e) => e.name === LEASE_CERT_EXTENSION)!;
  const exp = decodeJwt(stringOptionValue(ext)).exp!;
  const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, issued.lease.id as string));
  assert.ok(Date.parse(issued.lease.expires_at) <= Date.parse(at), `the lease expires at ${issued.lease.expires_at}, after its service token (${at})`);
  assert.ok(Number(cert.validBefore) <= end, `the certificate is valid before ${cert.validBefore}, after the token's ${end}`);
  assert.ok(exp <= end, `the lease token's exp ${exp} is after the service token's ${end}`);
  assert.equal(Number(cert.validBefore), exp);
  assert.equal(row?.expiresAt.toISOString(), issued.lease.expires_at);
  assert.equal(secs(issued.lease.expires_at), exp);
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`a lease never outlives the service token it came from (${name})`, { skip: makeApp.unavailable }, () => {
    it('an expose lease asked for 24 h through a token that expires in 60 s expires with the token', async () => {
      const t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const owner = await t.user(uniq('own'), 'member');
      const node = await enrollNode(t, admin.token);
      await heartbeat(t, node);
      const exposure = uniq('web-');
      await putExposure(t, owner.token, exposure);
      const st = await t.call('POST', '/v1/service-tokens', { token: owner.token, body: { name: uniq('st'), scopes: [`expose:${exposure}`], ttl_seconds: 60 } });
      assertOk(st, 201);
      const at = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'urn:tunnel:params:oauth:grant-type:service-token', service_token: st.body.token } });
      assertOk(at);
      const l = await t.call('POST', '/v1/leases', { token: at.body.access_token, body: { kind: 'expose', exposure, public_key: newClientKey().line, ttl_seconds: 86400 } });
      assertOk(l, 201);
      await assertEndsBy(t, l.body, st.body.expires_at);
      // Asked for less than the token has left: as asked.
      const short = await t.call('POST', '/v1/leases', { token: at.body.access_token, body: { kind: 'expose', exposure, public_key: newClientKey().line, ttl_seconds: 30 } });
      assertOk(short, 201);
      assert.equal(Date.parse(short.body.lease.expires_at) - Date.parse(short.body.lease.not_before), 30_000);
    });

    it('open leases, on the usual path and in one statement, end with the token as the database has it', async () => {
      const t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const owner = await t.user(uniq('own'), 'member');
      const friend = await t.user(uniq('fr'), 'member');
      const node = await enrollNode(t, admin.token);
      const exposure = uniq('web-');
      await putExposure(t, owner.token, exposure, [friend.name]);
      await exposeOn(t, admin.token, node, owner.token, exposure);
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      const friendToken = await tokenFor(t, friend, 'member');
      const st = await t.call('POST', '/v1/service-tokens', { token: friendToken, body: { name: uniq('st'), scopes: [`open:${exposure}`], ttl_seconds: 600 } });
      assertOk(st, 201);
      const at = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'urn:tunnel:params:oauth:grant-type:service-token', service_token: st.body.token } });
      assertOk(at);
      const open = () => t.call('POST', '/v1/leases', { token: at.body.access_token, body: { kind: 'open', exposure, public_key: newClientKey().line, ttl_seconds: 86400 } });

      const before = outcomes(t);
      const first = await open();
      assertOk(first, 201);
      assert.deepEqual(outcomes(t), before, 'the first lease takes the usual path');
      await assertEndsBy(t, first.body, st.body.expires_at);
      const second = await open();
      assertOk(second, 201);
      assert.deepEqual(outcomes(t), { ...before, issued: before.issued + 1 }, 'the second lease is issued in one statement');
      await assertEndsBy(t, second.body, st.body.expires_at);

      // The row's expiry changed since this replica read it (no route does this; another version
      // of the control plane might): the statement writes nothing and the usual path caps the
      // lease at the expiry the database has now.
      const sooner = new Date(Date.parse(st.body.expires_at) - 300_000);
      await t.deps.db.update(serviceTokens).set({ expiresAt: sooner }).where(eq(serviceTokens.id, st.body.id as string));
      const third = await open();
      assertOk(third, 201);
      assert.deepEqual(outcomes(t), { issued: before.issued + 1, changed: before.changed + 1 }, 'the statement saw the expiry change');
      await assertEndsBy(t, third.body, sooner.toISOString());
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
