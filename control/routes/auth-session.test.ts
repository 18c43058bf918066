/**
 * First-start setup, /v1/me, logout, request ids, and the app answering through `app.fetch`
 * alone (no server, no `app.request` helper).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { prepareSetupCode } from '../auth/setup-code.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { assertNoSecrets, assertOk, assertProblem, readResult } from '../testing/problem.js';
import { serviceAccess, tokenFor, uniq } from '../testing/fixtures.js';

const PASSWORD = 'first admin password';

let t: TestApp;
before(async () => {
  t = await createTestApp({ settings: { authRateLimit: 6 } });
});
after(() => t.close());

describe('POST /v1/setup', () => {
  it('creates the first admin once with the printed code, and is rate limited', async () => {
    const code = await prepareSetupCode(t.deps);
    assert.ok(code);
    const setup = (body: Record<string, unknown>) => t.call('POST', '/v1/setup', { body });

    // A wrong code is refused before the password is hashed (0.2-1 s of CPU each, every wrong code).
    const hash = t.deps.passwords.hash.bind(t.deps.passwords);
    let hashed = 0;
    t.deps.passwords.hash = (p: string) => {
      hashed++;
      return hash(p);
    };
    assertProblem(await setup({ setup_code: 'setup_wrong', name: 'root', password: PASSWORD }), 401, 'INVALID_CREDENTIALS');
    assert.equal(hashed, 0, 'no hash for a wrong code');
    assertProblem(await setup({ setup_code: code, name: 'root', password: 'short' }), 400, 'VALIDATION_FAILED');
    assertProblem(await setup({ setup_code: code, name: 'Root!', password: PASSWORD }), 400, 'VALIDATION_FAILED');
    // A lone UTF-16 surrogate would be hashed as U+FFFD: another password than the one typed.
    assertProblem(await setup({ setup_code: code, name: 'root', password: `${PASSWORD} \ud800` }), 400, 'VALIDATION_FAILED');
    const created = await setup({ setup_code: code, name: 'root', password: PASSWORD });
    assertOk(created, 201);
    assert.equal(created.body.name, 'root');
    assert.equal(created.body.role, 'admin');
    assert.equal(created.body.disabled, false);
    assertNoSecrets(created.body, [code, PASSWORD], 'setup response');

    assert.equal(hashed, 1, 'hashed for the right code');
    const again = await setup({ setup_code: code, name: 'root2', password: PASSWORD });
    assertProblem(again, 401, 'INVALID_CREDENTIALS');
    assert.equal(hashed, 1, 'no hash once setup is done');
    assertNoSecrets(again.body, [code], 'problem body');
    assert.equal(await prepareSetupCode(t.deps), null, 'no new setup code once a user exists');

    const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: 'root', password: PASSWORD } });
    assertOk(login);
    const me = await t.call('GET', '/v1/me', { token: login.body.access_token });
    assert.deepEqual(me.body, { id: created.body.id, name: 'root', role: 'admin' });

    const audit = await t.call('GET', '/v1/audit?limit=1000', { token: login.body.access_token });
    assert.ok(audit.body.events.some((e: { type: string }) => e.type === 'setup.admin_created'));
    assertNoSecrets(audit.body, [code, PASSWORD, login.body.access_token, login.body.refresh_token], 'audit log');

    // 3 attempts counted so far (validation failures never reach the limiter); 3 more are allowed.
    for (let i = 0; i < 3; i++) assertProblem(await setup({ setup_code: 'setup_x', name: 'eve', password: PASSWORD }), 401, 'INVALID_CREDENTIALS');
    assertProblem(await setup({ setup_code: 'setup_x', name: 'eve', password: PASSWORD }), 429, 'RATE_LIMITED');
  });
});

describe('GET /v1/me', () => {
  it('says who the token belongs to', async () => {
    const m = await t.user(uniq('mia'), 'member');
    const res = await t.call('GET', '/v1/me', { token: m.token });
    assertOk(res);
    assert.deepEqual(res.body, { id: m.id, name: m.name, role: 'member' });
  });

  it('refuses a still-unexpired token of a user who was disabled since', async () => {
    const admin = await t.user(uniq('adm'), 'admin');
    const m = await t.user(uniq('ned'), 'member');
    assertOk(await t.call('DELETE', `/v1/users/${m.name}`, { token: admin.token }));
    assertProblem(await t.call('GET', '/v1/me', { token: m.token }), 401, 'TOKEN_INVALID');
  });
});

describe('POST /v1/auth/logout', () => {
  const PW = 'logout test password';
  const login = async (name: string) =>
    (await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: name, password: PW } })).body;

  it('works without a body and records the logout', async () => {
    const u = await t.user(uniq('olga'), 'member', PW);
    const res = await t.call('POST', '/v1/auth/logout', { token: u.token });
    assert.equal(res.status, 204);
    const admin = await t.user(uniq('adm'), 'admin');
    const audit = await t.call('GET', '/v1/audit?limit=1000', { token: admin.token });
    assert.ok(audit.body.events.some((e: { type: string; actor: string }) => e.type === 'auth.logout' && e.actor === u.id));
  });

  it("cannot end another user's session with their refresh token", async () => {
    const a = await t.user(uniq('amy'), 'member', PW);
    const b = await t.user(uniq('bob'), 'member', PW);
    const bSession = await login(b.name);
    assert.equal((await t.call('POST', '/v1/auth/logout', { token: a.token, body: { refresh_token: bSession.refresh_token } })).status, 204);
    assertOk(await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: bSession.refresh_token } }));
  });

  it("ends another login of the caller's own with its refresh token, but not through a service token", async () => {
    const u = await t.user(uniq('sam'), 'member', PW);
    const refresh = (rt: string) => t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: rt } });
    const headless = await serviceAccess(t, u.token, ['open:*']);
    const target = await login(u.name);
    const denied = await t.call('POST', '/v1/auth/logout', { token: headless.accessToken, body: { refresh_token: target.refresh_token } });
    assertProblem(denied, 403, 'SCOPE_DENIED');
    const stillLive = await refresh(target.refresh_token);
    assertOk(stillLive);
    // RFC 7009: holding a refresh token is the authority to revoke it, from any login of its user.
    const other = await login(u.name);
    assert.equal((await t.call('POST', '/v1/auth/logout', { token: other.access_token, body: { refresh_token: stillLive.body.refresh_token } })).status, 204);
    assertProblem(await refresh(stillLive.body.refresh_token), 400, 'INVALID_GRANT');
    assertProblem(await t.call('GET', '/v1/me', { token: stillLive.body.access_token }), 401, 'TOKEN_INVALID');
  });

  it('validates its body', async () => {
    const u = await t.user(uniq('pia'), 'member');
    assertProblem(await t.call('POST', '/v1/auth/logout', { token: u.token, body: { refresh_token: 42 } }), 400, 'VALIDATION_FAILED');
    assertProblem(await t.call('POST', '/v1/auth/logout', { token: u.token, body: { refresh_token: 'x', all: true } }), 400, 'UNKNOWN_FIELD');
  });
});

describe('request ids and unknown routes', () => {
  it('echoes a well-formed x-request-id and replaces a malformed one', async () => {
    const echoed = await t.call('GET', '/v1/me', { headers: { 'x-request-id': 'trace-123.abc' } });
    assertProblem(echoed, 401, 'UNAUTHENTICATED');
    assert.equal(echoed.body.request_id, 'trace-123.abc');
    const replaced = await t.call('GET', '/v1/me', { headers: { 'x-request-id': 'bad id <script>' } });
    assertProblem(replaced, 401, 'UNAUTHENTICATED');
    assert.notEqual(replaced.body.request_id, 'bad id <script>');
    assert.match(replaced.body.request_id, /^req_/);
    const ok = await t.call('GET', '/healthz', { headers: { 'x-request-id': 'r-1' } });
    assert.equal(ok.headers.get('x-request-id'), 'r-1');
  });

  it('unknown routes are NOT_FOUND problems', async () => {
    assertProblem(await t.call('GET', '/v1/nope'), 404, 'NOT_FOUND');
    assertProblem(await t.call('GET', '/nope'), 404, 'NOT_FOUND');
  });
});

describe('app.fetch alone', () => {
  it('answers GET /v1/me with JSON, and problem+json without a token', async () => {
    const u = await t.user(uniq('fetcher'), 'member');
    const ok = await readResult(await t.app.fetch(new Request('http://x/v1/me', { headers: { authorization: `Bearer ${u.token}` } })));
    assertOk(ok);
    assert.match(ok.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(ok.body, { id: u.id, name: u.name, role: 'member' });

    assertProblem(await readResult(await t.app.fetch(new Request('http://x/v1/me'))), 401, 'UNAUTHENTICATED');
    const expired = await tokenFor(t, u, 'member');
    t.clock.advance((t.deps.settings.accessTokenTtl + 1) * 1000);
    const late = await t.app.fetch(new Request('http://x/v1/me', { headers: { authorization: `Bearer ${expired}` } }));
    assertProblem(await readResult(late), 401, 'TOKEN_EXPIRED');
  });

  it('takes JSON bodies and guards them the same way', async () => {
    const u = await t.user(uniq('writer'), 'member');
    const auth = { authorization: `Bearer ${u.token}` };
    const name = uniq('fx-');
    const put = await t.app.fetch(
      new Request(`http://x/v1/exposures/${name}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: '{"allow":[]}' }),
    );
    assertOk(await readResult(put), 201);
    const bad = await t.app.fetch(
      new Request(`http://x/v1/exposures/${name}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: '{' }),
    );
    assertProblem(await readResult(bad), 400, 'INVALID_JSON');
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`{"allow":[],"pad":"${'x'.repeat(t.deps.settings.maxBodyBytes)}"}`));
        controller.close();
      },
    });
    // A streamed body has no content-length: the limit must hold while reading.
    const big = await t.app.fetch(
      new Request(`http://x/v1/exposures/${name}`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit),
    );
    assertProblem(await readResult(big), 413, 'PAYLOAD_TOO_LARGE');
  });
});
