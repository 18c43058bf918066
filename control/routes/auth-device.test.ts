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
      assert.equal(page.headers.get('cross-origin-opener-policy'), 'same-origin');
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

    // An approval not yet exchanged is a login session to come: like one started, it must not
    // survive a disable and start once the user is enabled again.
    it('an approval made before a disable, or while disabled, gives no session after the user is enabled again', async () => {
      const user = await t.user(uniq('gia'), 'member', PASSWORD);
      const before = await startDevice(t);
      const signedIn = await signIn(t, before.user_code, user.name);
      assert.ok(signedIn.ticket);
      assertOk(await decide(t, signedIn.ticket, 'approve'));
      // Signed in on the page before the disable, decided after it.
      const during = await startDevice(t);
      const late = await signIn(t, during.user_code, user.name);
      assert.ok(late.ticket);
      assertOk(await t.call('DELETE', `/v1/users/${user.name}`, { token: await tokenFor(t, admin) }));
      assert.equal((await decide(t, late.ticket, 'approve')).status, 400, 'a disabled user approves nothing');
      assertOk(await t.call('PATCH', `/v1/users/${user.name}`, { token: await tokenFor(t, admin), body: { disabled: false } }));
      assertProblem(await poll(t, before.device_code), 400, 'ACCESS_DENIED');
      t.clock.advance(before.interval * 1000);
      assertProblem(await poll(t, during.device_code), 400, 'AUTHORIZATION_PENDING');
    });

    // The form's ticket is what the page's sign-in granted: a disable ends it, as it ends sessions,
    // and enabling the user again does not bring it back; a sign-in after that approves as before.
    it('an approval form loaded before a disable approves nothing after the user is enabled again', async () => {
      const user = await t.user(uniq('gus'), 'member', PASSWORD);
      const d = await startDevice(t);
      const old = await signIn(t, d.user_code, user.name);
      assert.ok(old.ticket);
      assertOk(await t.call('DELETE', `/v1/users/${user.name}`, { token: await tokenFor(t, admin) }));
      assertOk(await t.call('PATCH', `/v1/users/${user.name}`, { token: await tokenFor(t, admin), body: { disabled: false } }));
      const refused = await decide(t, old.ticket, 'approve');
      assert.equal(refused.status, 400, 'a ticket from before the disable is void');
      assert.match(String(refused.body), /name="username"/, 'the page asks to sign in again');
      assertProblem(await poll(t, d.device_code), 400, 'AUTHORIZATION_PENDING');
      const again = await signIn(t, d.user_code, user.name);
      assert.ok(again.ticket);
      assertOk(await decide(t, again.ticket, 'approve'));
      t.clock.advance(d.interval * 1000);
      assertOk(await poll(t, d.device_code));
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

    describe('phishing: someone else starts the sign-in and sends the victim the link', () => {
      let p: TestApp;
      // Two proxies: the load balancer (the socket's peer) and 10.9.9.9, which saw the client.
      const via = (ip: string) => ({ 'x-forwarded-for': `${ip}, 10.9.9.9` });
      before(async () => {
        p = await makeApp({ settings: { trustProxy: 2 } });
      });
      const start = async (ip: string, clientName: string) => {
        const res = await p.call('POST', '/v1/auth/device', { body: { client_name: clientName }, headers: via(ip) });
        assertOk(res);
        return res.body as { device_code: string; user_code: string };
      };
      const signInFrom = async (ip: string, userCode: string, username: string) => {
        const res = await p.call('POST', '/device', {
          body: new URLSearchParams({ user_code: userCode, username, password: PASSWORD }).toString(),
          headers: { ...FORM, ...via(ip) },
        });
        const html = typeof res.body === 'string' ? res.body : '';
        return { res, html, ticket: /name="ticket" value="([^"]+)"/.exec(html)?.[1] };
      };
      const decideFrom = (ip: string, ticket: string, decision: string, extra: Record<string, string> = {}) =>
        p.call('POST', '/device/decision', { body: new URLSearchParams({ ticket, decision, ...extra }).toString(), headers: { ...FORM, ...via(ip) } });

      it('the page shows where and when it started as fact, the name as an unverified claim, and a warning; another network must be confirmed', async () => {
        const victim = await p.user(uniq('victim'), 'member', PASSWORD);
        const d = await start('198.51.100.7', 'Tunnel CLI <b>official</b>');
        const { html, ticket } = await signInFrom('203.0.113.9', d.user_code, victim.name);
        assert.ok(ticket);
        assert.match(html, /Started from<\/dt>\s*<dd id="requester">198\.51\.100\.7 \(<strong>not<\/strong> the network of this browser, 203\.0\.113\.9\)/);
        assert.match(html, /“<bdi>Tunnel CLI &lt;b&gt;official&lt;\/b&gt;<\/bdi>” <span class="unverified">\(its own claim, not verified/);
        assert.match(html, /If someone sent\s+you this link or code, or asked you to approve it, choose Deny/);
        assert.match(html, /name="confirm_elsewhere" value="yes" required/);
        // Approving without the box is refused, and the code stays pending.
        const refused = await decideFrom('203.0.113.9', ticket, 'approve');
        assert.equal(refused.status, 400);
        assert.match(String(refused.body), /started from another network/);
        assertProblem(await poll(p, d.device_code), 400, 'AUTHORIZATION_PENDING');
        // Denying needs no box; ticking it approves.
        assert.equal((await decideFrom('203.0.113.9', ticket, 'approve', { confirm_elsewhere: 'yes' })).status, 200);
        assertOk(await poll(p, d.device_code));
        const audit = await p.call('GET', `/v1/audit?type=auth.device_approved&actor=${victim.id}`, { token: await tokenFor(p, await p.user(uniq('adm'), 'admin')) });
        assert.deepEqual(audit.body.events[0]?.data, { approver_address: '203.0.113.9', elsewhere: true });
      });

      it('the same network (the same IPv4 address, or the same IPv6 /64) needs no box; a deny never does', async () => {
        const user = await p.user(uniq('self'), 'member', PASSWORD);
        const d = await start('2001:db8:1:2::10', 'laptop');
        const { html, ticket } = await signInFrom('2001:db8:1:2::99', d.user_code, user.name);
        assert.ok(ticket);
        assert.match(html, /2001:db8:1:2::10 \(the network of this browser\)/);
        assert.doesNotMatch(html, /confirm_elsewhere/);
        assert.equal((await decideFrom('2001:db8:1:2::99', ticket, 'approve')).status, 200);
        assertOk(await poll(p, d.device_code));
        const e = await start('198.51.100.8', 'x');
        const other = await signInFrom('203.0.113.10', e.user_code, user.name);
        assert.ok(other.ticket);
        assert.equal((await decideFrom('203.0.113.10', other.ticket, 'deny')).status, 200);
        assertProblem(await poll(p, e.device_code), 400, 'ACCESS_DENIED');
      });
    });

    it('POST /v1/auth/device validates its body', async () => {
      assertProblem(await t.call('POST', '/v1/auth/device', { body: { client_name: 'x'.repeat(65) } }), 400, 'VALIDATION_FAILED');
      assertOk(await t.call('POST', '/v1/auth/device', { body: {} }));
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
