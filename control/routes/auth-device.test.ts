/**
 * Device authorization (RFC 8628): POST /v1/auth/device, the approval page at /device, and the
 * device-code grant of POST /v1/auth/token. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { GRANT_DEVICE_CODE } from '../../protocol/api-types.js';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertNoSecrets, assertOk, assertProblem } from '../testing/problem.js';
import { tokenFor, uniq } from '../testing/fixtures.js';

const PASSWORD = 'correct horse battery staple';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function startDevice(t: TestApp, clientName = 'laptop') {
  const res = await t.call('POST', '/v1/auth/device', { body: { client_name: clientName } });
  assertOk(res);
  return res.body as { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; interval: number; expires_in: number };
}

const poll = (t: TestApp, deviceCode: string) =>
  t.call('POST', '/v1/auth/token', { body: { grant_type: GRANT_DEVICE_CODE, device_code: deviceCode } });

/** Signs in on the approval page and returns the approval ticket from the form. */
async function signIn(t: TestApp, userCode: string, username: string, password = PASSWORD) {
  const res = await t.call('POST', '/device', { body: new URLSearchParams({ user_code: userCode, username, password }).toString(), headers: FORM });
  const ticket = /name="ticket" value="([^"]+)"/.exec(typeof res.body === 'string' ? res.body : '')?.[1];
  return { res, ticket };
}

async function decide(t: TestApp, ticket: string, decision: 'approve' | 'deny') {
  return t.call('POST', '/device/decision', { body: new URLSearchParams({ ticket, decision }).toString(), headers: FORM });
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`device flow (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: { id: string; name: string; token: string };
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
    });

    it('pending, slow_down, approval, tokens, then consumed', async () => {
      const user = await t.user(uniq('dana'), 'member', PASSWORD);
      const d = await startDevice(t);
      assert.equal(d.verification_uri, `${t.deps.settings.issuer}/device`);
      assert.ok(d.verification_uri_complete.includes(encodeURIComponent(d.user_code)));
      assert.match(d.user_code, /^[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}$/);
      assert.equal(d.interval, t.deps.settings.devicePollInterval);
      assert.equal(d.expires_in, t.deps.settings.deviceCodeTtl);

      const first = await poll(t, d.device_code);
      assertProblem(first, 400, 'AUTHORIZATION_PENDING');
      assert.equal(first.body.error, 'authorization_pending');
      const tooFast = await poll(t, d.device_code);
      assertProblem(tooFast, 400, 'SLOW_DOWN');
      assert.equal(tooFast.body.error, 'slow_down');
      // After slow_down the interval is 5 s longer (RFC 8628 §3.5) for the server as well.
      t.clock.advance(d.interval * 1000);
      assertProblem(await poll(t, d.device_code), 400, 'SLOW_DOWN');
      t.clock.advance((d.interval + 10) * 1000);
      assertProblem(await poll(t, d.device_code), 400, 'AUTHORIZATION_PENDING');

      const page = await t.call('GET', `/device?user_code=${encodeURIComponent(d.user_code)}`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      const { res, ticket } = await signIn(t, d.user_code.toLowerCase().replace('-', ''), user.name);
      assert.equal(res.status, 200);
      assert.ok(ticket, 'the approval form carries a ticket');
      assert.equal((await decide(t, ticket, 'approve')).status, 200);

      t.clock.advance(d.interval * 1000);
      const ok = await poll(t, d.device_code);
      assertOk(ok);
      assert.equal(ok.body.token_type, 'Bearer');
      assert.match(ok.body.refresh_token, /^tnl_rt_/);
      assert.equal(ok.headers.get('cache-control'), 'no-store');
      const me = await t.call('GET', '/v1/me', { token: ok.body.access_token });
      assertOk(me);
      assert.equal(me.body.name, user.name);

      t.clock.advance(d.interval * 1000);
      const again = await poll(t, d.device_code);
      assertProblem(again, 400, 'INVALID_GRANT');
      assert.equal(again.body.error, 'invalid_grant');
      // The ticket was for that code only, and the code is no longer pending.
      assert.equal((await decide(t, ticket, 'approve')).status, 400);

      const audit = await t.call('GET', '/v1/audit?limit=1000', { token: (await t.user(uniq('auditor'), 'admin')).token });
      const login = audit.body.events.find((e: { type: string; actor: string }) => e.type === 'auth.login' && e.actor === user.id);
      assert.deepEqual(login?.data, { method: 'device' });
      assert.ok(audit.body.events.some((e: { type: string; actor: string }) => e.type === 'auth.device_approved' && e.actor === user.id));
      assertNoSecrets(audit.body, [d.device_code, ok.body.access_token, ok.body.refresh_token, ticket, PASSWORD], 'audit log');
    });

    it('concurrent polls of an approved code get tokens exactly once', async () => {
      const user = await t.user(uniq('ivy'), 'member', PASSWORD);
      const d = await startDevice(t);
      const { ticket } = await signIn(t, d.user_code, user.name);
      assert.ok(ticket);
      assertOk(await decide(t, ticket, 'approve'));
      const results = await Promise.all([poll(t, d.device_code), poll(t, d.device_code), poll(t, d.device_code)]);
      assert.equal(results.filter((r) => r.status === 200).length, 1, JSON.stringify(results.map((r) => r.body.code ?? 'ok')));
      for (const r of results) if (r.status !== 200) assert.ok(['INVALID_GRANT', 'SLOW_DOWN'].includes(r.body.code), r.body.code);
    });

    it('a denied sign-in gives access_denied', async () => {
      const user = await t.user(uniq('erin'), 'member', PASSWORD);
      const d = await startDevice(t);
      const { ticket } = await signIn(t, d.user_code, user.name);
      assert.ok(ticket);
      assert.equal((await decide(t, ticket, 'deny')).status, 200);
      const res = await poll(t, d.device_code);
      assertProblem(res, 400, 'ACCESS_DENIED');
      assert.equal(res.body.error, 'access_denied');
    });

    it('an unapproved code expires: expired_token', async () => {
      const d = await startDevice(t);
      t.clock.advance((t.deps.settings.deviceCodeTtl + 1) * 1000);
      const res = await poll(t, d.device_code);
      assertProblem(res, 400, 'EXPIRED_TOKEN');
      assert.equal(res.body.error, 'expired_token');
      // An expired code cannot be approved either.
      const user = await t.user(uniq('fay'), 'member', PASSWORD);
      const { res: page, ticket } = await signIn(t, d.user_code, user.name);
      assert.equal(page.status, 401, 'the same answer as a wrong password (issue 9, finding 4)');
      assert.equal(ticket, undefined);
    });

    it('an unknown device code is invalid_grant', async () => {
      assertProblem(await poll(t, 'tnl_dc_never-issued'), 400, 'INVALID_GRANT');
    });

    it('an approval by a user disabled before the poll gives access_denied', async () => {
      const user = await t.user(uniq('gil'), 'member', PASSWORD);
      const d = await startDevice(t);
      const { ticket } = await signIn(t, d.user_code, user.name);
      assert.ok(ticket);
      assertOk(await decide(t, ticket, 'approve'));
      assertOk(await t.call('DELETE', `/v1/users/${user.name}`, { token: await tokenFor(t, admin) }));
      assertProblem(await poll(t, d.device_code), 400, 'ACCESS_DENIED');
    });

    it('the approval page refuses wrong passwords, unknown codes and forged tickets', async () => {
      const user = await t.user(uniq('hal'), 'member', PASSWORD);
      const d = await startDevice(t);
      const wrong = await signIn(t, d.user_code, user.name, 'not the password');
      assert.equal(wrong.res.status, 401);
      assert.equal(wrong.ticket, undefined);
      assert.ok(!String(wrong.res.body).includes('not the password'), 'the page does not echo the password');
      const unknownCode = await signIn(t, 'BBBB-BBBB', user.name);
      assert.equal(unknownCode.res.status, 401, 'a right password with an unknown code looks like a wrong password');
      assert.equal(unknownCode.res.body, String(wrong.res.body).replace(d.user_code, 'BBBB-BBBB'), 'the same page, but for the code typed');
      assert.equal((await decide(t, 'not.a.ticket', 'approve')).status, 400);
      // An access token is signed by the same key but is not an approval ticket.
      assert.equal((await decide(t, user.token, 'approve')).status, 400);
      const { ticket } = await signIn(t, d.user_code, user.name);
      assert.ok(ticket);
      assert.equal((await decide(t, ticket, 'maybe' as 'approve')).status, 400);
      t.clock.advance(301_000);
      assert.equal((await decide(t, ticket, 'approve')).status, 400, 'tickets expire');
      assertProblem(await poll(t, d.device_code), 400, 'AUTHORIZATION_PENDING');
    });

    it('POST /v1/auth/device validates its body', async () => {
      assertProblem(await t.call('POST', '/v1/auth/device', { body: { client_name: 'x'.repeat(65) } }), 400, 'VALIDATION_FAILED');
      assertOk(await t.call('POST', '/v1/auth/device', { body: {} }));
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
