/**
 * Issue 9, finding 9, through the real HTTP server on PGlite and on a real Postgres: an access
 * token ends with its session (logout with or without the refresh token, a refresh-token reuse
 * that revoked the family), even when this replica verified it before; a retried refresh gets the
 * same successor instead of logging the user out; lease issuance is limited per user.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, serviceAccess, uniq } from '../../control/testing/fixtures.js';
import { assertOk, assertProblem } from '../../control/testing/problem.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';

const PASSWORD = 'a long enough password';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`issue 9 finding 9: sessions over HTTP (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    before(async () => {
      t = await makeApp({ settings: { leaseRateLimit: 3 } });
      s = await serveTestApp(t);
    });
    after(() => s?.close());

    const login = async (user: string) => {
      const r = await s.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: user, password: PASSWORD } });
      assertOk(r);
      return r.body as { access_token: string; refresh_token: string };
    };
    const refresh = (rt: string) => s.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: rt } });
    const me = (at: string) => s.call('GET', '/v1/me', { token: at });
    const newUser = async (prefix: string) => (await t.user(uniq(prefix), 'member', PASSWORD)).name;

    it('logout without a refresh token ends the session: its access and refresh tokens stop at once', async () => {
      const name = await newUser('lo');
      const session = await login(name);
      const other = await login(name);
      assertOk(await me(session.access_token)); // verified (and remembered) by this replica
      assert.equal((await s.call('POST', '/v1/auth/logout', { token: session.access_token })).status, 204);
      assertProblem(await me(session.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await refresh(session.refresh_token), 400, 'INVALID_GRANT');
      assertOk(await me(other.access_token));
      assertOk(await refresh(other.refresh_token));
    });

    it('logout with a refresh token of another session ends both', async () => {
      const name = await newUser('lo2');
      const a = await login(name);
      const b = await login(name);
      const res = await s.call('POST', '/v1/auth/logout', { token: a.access_token, body: { refresh_token: b.refresh_token } });
      assert.equal(res.status, 204);
      assertProblem(await me(a.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await me(b.access_token), 401, 'TOKEN_INVALID');
    });

    it('a refresh-token reuse that revokes the family ends every access token of it at once', async () => {
      const name = await newUser('reuse');
      const first = await login(name);
      const second = await refresh(first.refresh_token);
      assertOk(second);
      assertOk(await me(first.access_token));
      assertOk(await me(second.body.access_token));
      t.clock.advance((t.deps.settings.refreshReuseGrace + 1) * 1000);
      assertProblem(await refresh(first.refresh_token), 400, 'INVALID_GRANT');
      assertProblem(await me(first.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await me(second.body.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await refresh(second.body.refresh_token), 400, 'INVALID_GRANT');
    });

    it('two concurrent refreshes of one token (a CLI retry) get the same successor and keep the session', async () => {
      const name = await newUser('retry');
      const session = await login(name);
      const [a, b] = await Promise.all([refresh(session.refresh_token), refresh(session.refresh_token)]);
      assertOk(a!);
      assertOk(b!);
      assert.equal(a!.body.refresh_token, b!.body.refresh_token, 'the same successor');
      assertOk(await me(a!.body.access_token));
      assertOk(await me(b!.body.access_token));
      // A retry a little later, within the grace window, still gets it.
      t.clock.advance(5_000);
      const c = await refresh(session.refresh_token);
      assertOk(c);
      assert.equal(c.body.refresh_token, a!.body.refresh_token);
      // The successor works; once it was used, the old token is reuse even inside the window.
      const next = await refresh(a!.body.refresh_token);
      assertOk(next);
      assertProblem(await refresh(session.refresh_token), 400, 'INVALID_GRANT');
      assertProblem(await me(next.body.access_token), 401, 'TOKEN_INVALID');
    });

    it('a retry after the grace window is reuse: the family is revoked', async () => {
      const name = await newUser('late');
      const session = await login(name);
      const rotated = await refresh(session.refresh_token);
      assertOk(rotated);
      t.clock.advance((t.deps.settings.refreshReuseGrace + 1) * 1000);
      assertProblem(await refresh(session.refresh_token), 400, 'INVALID_GRANT');
      assertProblem(await refresh(rotated.body.refresh_token), 400, 'INVALID_GRANT');
    });

    it('POST /v1/leases is rate limited per user, across the user\'s tokens', async () => {
      const admin = await t.user(uniq('admin'), 'admin');
      const served = { ...t, call: s.call };
      const node = await enrollNode(served, admin.token);
      const exposure = uniq('svc');
      const owner = await t.user(uniq('own'), 'member', PASSWORD);
      await putExposure(served, owner.token, exposure);
      await exposeOn(served, admin.token, node, admin.token, exposure); // the relay holds it (counts for the admin)
      await heartbeat(served, node, [{ name: exposure, port: 22 }]);
      const robot = await serviceAccess(served, owner.token, [`open:${exposure}`]);
      const issue = (token: string) =>
        s.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure, public_key: newClientKey().line } });
      assertOk(await issue(owner.token), 201);
      assertOk(await issue(robot.accessToken), 201);
      assertOk(await issue(owner.token), 201);
      const limited = await issue(robot.accessToken);
      assertProblem(limited, 429, 'RATE_LIMITED');
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      // Another user is not affected; the next minute the owner may again.
      assertOk(await issue(admin.token), 201);
      t.clock.advance(60_000);
      // The relay heartbeats on: an exposure on a relay silent for a minute is offline (issue 10).
      await heartbeat(served, node, [{ name: exposure, port: 22 }]);
      assertOk(await issue(owner.token), 201);
    });

    it('POST /v1/leases: only a live caller\'s attempt counts against the limit, and a dead token gets 401 before 429', async () => {
      // The guard counts in the same statement that looks the caller up (issue 11): a token whose
      // session ended, whose service token was revoked or expired, or whose user is disabled must
      // be refused as before and must not use up the user's leases.
      const admin = await t.user(uniq('admin'), 'admin');
      const served = { ...t, call: s.call };
      const node = await enrollNode(served, admin.token);
      const exposure = uniq('svc');
      const name = await newUser('cnt');
      const session = await login(name);
      await putExposure(served, session.access_token, exposure);
      await exposeOn(served, admin.token, node, admin.token, exposure);
      await heartbeat(served, node, [{ name: exposure, port: 22 }]);
      const issue = (token: string) =>
        s.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure, public_key: newClientKey().line } });

      const revoked = await serviceAccess(served, session.access_token, [`open:${exposure}`]);
      assert.equal((await s.call('DELETE', `/v1/service-tokens/${revoked.id}`, { token: session.access_token })).status, 200);
      const expiring = await s.call('POST', '/v1/service-tokens', {
        token: session.access_token,
        body: { name: uniq('st'), scopes: [`open:${exposure}`], ttl_seconds: 60 },
      });
      assertOk(expiring, 201);
      const grant = await s.call('POST', '/v1/auth/token', {
        body: { grant_type: 'urn:tunnel:params:oauth:grant-type:service-token', service_token: expiring.body.token },
      });
      assertOk(grant, 200);
      const ended = await login(name);
      assert.equal((await s.call('POST', '/v1/auth/logout', { token: ended.access_token })).status, 204);

      for (let i = 0; i < 4; i++) {
        assertProblem(await issue(revoked.accessToken), 401, 'TOKEN_INVALID');
        assertProblem(await issue(ended.access_token), 401, 'TOKEN_INVALID');
      }
      // The limit is 3: all three are still there for the live session.
      for (let i = 0; i < 3; i++) assertOk(await issue(session.access_token), 201);
      assertProblem(await issue(session.access_token), 429, 'RATE_LIMITED');
      // Over the limit, a dead token is still told it is dead.
      assertProblem(await issue(revoked.accessToken), 401, 'TOKEN_INVALID');

      // Next minute: the service token's expiry passed (its access token is still within its own
      // life), and then the user is disabled; neither counts, re-enabled the user has all three.
      t.clock.advance(61_000);
      await heartbeat(served, node, [{ name: exposure, port: 22 }]);
      for (let i = 0; i < 4; i++) assertProblem(await issue(grant.body.access_token), 401, 'TOKEN_INVALID');
      const user = await s.call('PATCH', `/v1/users/${name}`, { token: admin.token, body: { disabled: true } });
      assertOk(user, 200);
      for (let i = 0; i < 4; i++) assertProblem(await issue(session.access_token), 401, 'TOKEN_INVALID');
      assertOk(await s.call('PATCH', `/v1/users/${name}`, { token: admin.token, body: { disabled: false } }), 200);
      const again = await login(name);
      for (let i = 0; i < 3; i++) assertOk(await issue(again.access_token), 201);
      assertProblem(await issue(again.access_token), 429, 'RATE_LIMITED');
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
