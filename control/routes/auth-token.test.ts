/**
 * POST /v1/auth/token: refresh rotation and reuse detection, password logins with rate limits,
 * and the service-token grant. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { GRANT_SERVICE_TOKEN } from '../../protocol/api-types.js';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertNoSecrets, assertOk, assertProblem } from '../testing/problem.js';
import { tokenFor, uniq } from '../testing/fixtures.js';

const PASSWORD = 'a long enough password';

const token = (t: TestApp, body: Record<string, unknown>, headers?: Record<string, string>) =>
  t.call('POST', '/v1/auth/token', { body, headers });
const login = (t: TestApp, username: string, password = PASSWORD, headers?: Record<string, string>) =>
  token(t, { grant_type: 'password', username, password }, headers);
const refresh = (t: TestApp, refreshToken: string) => token(t, { grant_type: 'refresh_token', refresh_token: refreshToken });

async function auditEvents(t: TestApp, admin: { id: string; name: string }) {
  const res = await t.call('GET', '/v1/audit?limit=1000', { token: await tokenFor(t, admin) });
  assertOk(res);
  return res.body.events as { type: string; actor: string | null; subject: string | null; data: Record<string, unknown> }[];
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`token endpoint (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: { id: string; name: string; token: string };
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
    });

    describe('refresh_token grant', () => {
      it('rotates: each refresh token works once and yields a new pair', async () => {
        const u = await t.user(uniq('rita'), 'member', PASSWORD);
        const first = await login(t, u.name);
        assertOk(first);
        const second = await refresh(t, first.body.refresh_token);
        assertOk(second);
        assert.notEqual(second.body.refresh_token, first.body.refresh_token);
        assert.notEqual(second.body.access_token, first.body.access_token);
        assert.equal(second.headers.get('cache-control'), 'no-store');
        const me = await t.call('GET', '/v1/me', { token: second.body.access_token });
        assertOk(me);
        assert.equal(me.body.id, u.id);
        assertOk(await refresh(t, second.body.refresh_token));
      });

      it('reuse of a rotated token revokes the whole family, and only that family', async () => {
        const u = await t.user(uniq('mallory'), 'member', PASSWORD);
        const other = await login(t, u.name);
        const a = await login(t, u.name);
        const b = await refresh(t, a.body.refresh_token);
        assertOk(b);
        // Past the grace window for retries (issue 9, finding 9), a second use is reuse.
        t.clock.advance((t.deps.settings.refreshReuseGrace + 1) * 1000);
        const reuse = await refresh(t, a.body.refresh_token);
        assertProblem(reuse, 400, 'INVALID_GRANT');
        assert.equal(reuse.body.error, 'invalid_grant');
        assertProblem(await refresh(t, b.body.refresh_token), 400, 'INVALID_GRANT');
        assertOk(await refresh(t, other.body.refresh_token));
        const events = await auditEvents(t, admin);
        assert.ok(events.some((e) => e.type === 'auth.refresh_reuse' && e.actor === u.id));
        assertNoSecrets(events, [a.body.refresh_token, b.body.refresh_token, PASSWORD], 'audit log');
        assertNoSecrets(reuse.body, [a.body.refresh_token], 'problem body');
      });

      it('a refresh token of a session that ended (logout, user disabled) is refused and audited as after its end, not as reuse', async () => {
        const u = await t.user(uniq('late'), 'member', PASSWORD);
        const a = await login(t, u.name);
        const a2 = await refresh(t, a.body.refresh_token);
        assertOk(a2);
        assert.equal((await t.call('POST', '/v1/auth/logout', { token: a2.body.access_token, body: {} })).status, 204);
        const b = await login(t, u.name);
        assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await tokenFor(t, admin) }));
        t.clock.advance((t.deps.settings.refreshReuseGrace + 1) * 1000);
        // After the logout: its live token and the one rotated away before it; after the disable.
        for (const rt of [a2.body.refresh_token, a.body.refresh_token, b.body.refresh_token]) {
          const res = await refresh(t, rt);
          assertProblem(res, 400, 'INVALID_GRANT');
          assert.equal(res.body.error, 'invalid_grant');
        }
        const mine = (await auditEvents(t, admin)).filter((e) => e.actor === u.id && e.type.startsWith('auth.refresh'));
        assert.deepEqual(mine.map((e) => e.type), ['auth.refresh_after_end', 'auth.refresh_after_end', 'auth.refresh_after_end']);
      });

      it('two concurrent refreshes with one token get the same successor (a retry is not reuse)', async () => {
        const u = await t.user(uniq('racer'), 'member', PASSWORD);
        const s = await login(t, u.name);
        const results = await Promise.all([refresh(t, s.body.refresh_token), refresh(t, s.body.refresh_token)]);
        for (const r of results) assertOk(r);
        assert.equal(results[0]!.body.refresh_token, results[1]!.body.refresh_token);
        assertOk(await refresh(t, results[0]!.body.refresh_token));
      });

      it('refuses unknown, expired and disabled-user refresh tokens', async () => {
        assertProblem(await refresh(t, 'tnl_rt_never-issued'), 400, 'INVALID_GRANT');
        const u = await t.user(uniq('otto'), 'member', PASSWORD);
        const old = await login(t, u.name);
        t.clock.advance((t.deps.settings.refreshTokenTtl + 1) * 1000);
        assertProblem(await refresh(t, old.body.refresh_token), 400, 'INVALID_GRANT');
        const fresh = await login(t, u.name);
        assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await tokenFor(t, admin) }));
        assertProblem(await refresh(t, fresh.body.refresh_token), 400, 'INVALID_GRANT');
      });

      it('logout with the refresh token ends that session', async () => {
        const u = await t.user(uniq('lou'), 'member', PASSWORD);
        const s = await login(t, u.name);
        const out = await t.call('POST', '/v1/auth/logout', { token: s.body.access_token, body: { refresh_token: s.body.refresh_token } });
        assert.equal(out.status, 204);
        assertProblem(await refresh(t, s.body.refresh_token), 400, 'INVALID_GRANT');
      });
    });

    describe('password grant', () => {
      it('logs in with the right password and records it', async () => {
        const u = await t.user(uniq('pat'), 'member', PASSWORD);
        const res = await login(t, u.name);
        assertOk(res);
        assert.equal(res.body.token_type, 'Bearer');
        assert.equal(res.body.expires_in, t.deps.settings.accessTokenTtl);
        assert.match(res.body.refresh_token, /^tnl_rt_/);
        const events = await auditEvents(t, admin);
        assert.ok(events.some((e) => e.type === 'auth.login' && e.actor === u.id && e.data.method === 'password'));
      });

      it('wrong password, unknown user, password-less and disabled users all get INVALID_CREDENTIALS', async () => {
        const u = await t.user(uniq('quinn'), 'member', PASSWORD);
        const wrong = await login(t, u.name, 'not the password at all');
        assertProblem(wrong, 400, 'INVALID_CREDENTIALS');
        assert.equal(wrong.body.error, 'invalid_grant');
        assertProblem(await login(t, uniq('ghost')), 400, 'INVALID_CREDENTIALS');
        const noPassword = await t.user(uniq('svc'), 'member');
        assertProblem(await login(t, noPassword.name, 'anything-at-all'), 400, 'INVALID_CREDENTIALS');
        assertOk(await t.call('DELETE', `/v1/users/${u.name}`, { token: await tokenFor(t, admin) }));
        assertProblem(await login(t, u.name), 400, 'INVALID_CREDENTIALS');
        const events = await auditEvents(t, admin);
        assert.ok(events.some((e) => e.type === 'auth.login_failed' && e.subject === u.name));
        assertNoSecrets(events, [PASSWORD, 'not the password at all'], 'audit log');
      });

      it('an unsupported grant type is unsupported_grant_type', async () => {
        const res = await token(t, { grant_type: 'client_credentials', client_id: 'x' });
        assertProblem(res, 400, 'UNSUPPORTED_GRANT_TYPE');
        assert.equal(res.body.error, 'unsupported_grant_type');
        assertProblem(await token(t, { grant_type: 'password', username: 'x' }), 400, 'VALIDATION_FAILED');
      });
    });

    describe('rate limits', () => {
      let limited: TestApp;
      before(async () => {
        // Two proxies: the load balancer (the socket's peer) and 10.9.9.9, which saw the client.
        limited = await makeApp({ settings: { authRateLimit: 3, trustProxy: 2 } });
      });
      const from = (ip: string) => ({ 'x-forwarded-for': `${ip}, 10.9.9.9` });

      it('per source: the 4th attempt in a minute is RATE_LIMITED, even with the right password', async () => {
        const u = await limited.user(uniq('rob'), 'member', PASSWORD);
        for (let i = 0; i < 3; i++) assertProblem(await login(limited, u.name, 'wrong password!', from('192.0.2.1')), 400, 'INVALID_CREDENTIALS');
        const res = await login(limited, u.name, PASSWORD, from('192.0.2.1'));
        assertProblem(res, 429, 'RATE_LIMITED');
        const retryAfter = Number(res.headers.get('retry-after'));
        assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
        limited.clock.advance(60_000);
        assertOk(await login(limited, u.name, PASSWORD, from('192.0.2.1')));
      });

      it('per user name: another source cannot keep guessing the same account', async () => {
        const u = await limited.user(uniq('sam'), 'member', PASSWORD);
        const v = await limited.user(uniq('val'), 'member', PASSWORD);
        for (let i = 0; i < 3; i++) await login(limited, u.name, 'wrong password!', from(`198.51.100.${i + 1}`));
        assertProblem(await login(limited, u.name, PASSWORD, from('198.51.100.50')), 429, 'RATE_LIMITED');
        assertOk(await login(limited, v.name, PASSWORD, from('198.51.100.51')));
      });

      it('the device endpoint is rate limited per source', async () => {
        for (let i = 0; i < 3; i++) assertOk(await limited.call('POST', '/v1/auth/device', { body: {}, headers: from('203.0.113.7') }));
        assertProblem(await limited.call('POST', '/v1/auth/device', { body: {}, headers: from('203.0.113.7') }), 429, 'RATE_LIMITED');
        assertOk(await limited.call('POST', '/v1/auth/device', { body: {}, headers: from('203.0.113.8') }));
      });
    });

    describe('service-token grant', () => {
      it('exchanges a service token for a scoped access token', async () => {
        const u = await t.user(uniq('ci'), 'member');
        const created = await t.call('POST', '/v1/service-tokens', { token: u.token, body: { name: 'hostx', scopes: ['expose:hostx-ssh'] } });
        assertOk(created, 201);
        const res = await token(t, { grant_type: GRANT_SERVICE_TOKEN, service_token: created.body.token });
        assertOk(res);
        assert.equal(res.body.scope, 'expose:hostx-ssh');
        assert.equal(res.body.refresh_token, undefined, 'headless hosts re-exchange the service token instead');
        const me = await t.call('GET', '/v1/me', { token: res.body.access_token });
        assertOk(me);
        assert.deepEqual(me.body, { id: u.id, name: u.name, role: 'member', scopes: ['expose:hostx-ssh'] });
      });

      it('refuses unknown, revoked and expired service tokens; revocation also kills minted access tokens', async () => {
        assertProblem(await token(t, { grant_type: GRANT_SERVICE_TOKEN, service_token: 'tnl_st_never-issued' }), 400, 'INVALID_GRANT');
        const u = await t.user(uniq('cd'), 'member');
        const st = await t.call('POST', '/v1/service-tokens', { token: u.token, body: { name: 'a', scopes: ['open:*'] } });
        const minted = await token(t, { grant_type: GRANT_SERVICE_TOKEN, service_token: st.body.token });
        assertOk(minted);
        assertOk(await t.call('DELETE', `/v1/service-tokens/${st.body.id}`, { token: u.token }));
        assertProblem(await token(t, { grant_type: GRANT_SERVICE_TOKEN, service_token: st.body.token }), 400, 'INVALID_GRANT');
        assertProblem(await t.call('GET', '/v1/me', { token: minted.body.access_token }), 401, 'TOKEN_INVALID');

        const short = await t.call('POST', '/v1/service-tokens', {
          token: await tokenFor(t, u, 'member'),
          body: { name: 'b', scopes: ['open:*'], ttl_seconds: 60 },
        });
        assertOk(short, 201);
        t.clock.advance(61_000);
        assertProblem(await token(t, { grant_type: GRANT_SERVICE_TOKEN, service_token: short.body.token }), 400, 'INVALID_GRANT');
      });
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
