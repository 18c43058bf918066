/**
 * The console session outlives its access token: a page whose access token cookie is gone (the
 * browser drops it when it expires) or has expired refreshes it from the refresh token cookie and
 * renders, with the new pair in its cookies, however many API calls the page makes. But not its
 * idle timeout: a console session that made no request for `consoleIdleTimeout` is ended on the
 * server (refresh token refused, family revoked, audited), while a CLI session is not.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { uniq } from '../testing/fixtures.js';
import { auditEvents } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';
import { consoleRequest, type Jar } from '../testing/console-cookies.js';

const BASE = 'http://console.test';
const PASSWORD = 'a long enough password';

describe('console: the session refreshes its access token', () => {
  let t: TestApp;
  let name: string;

  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
    name = uniq('admin');
    await t.user(name, 'admin', PASSWORD);
  });
  after(async () => {
    await t?.close();
  });

  const get = (jar: Jar, path: string, form?: Record<string, string>) => consoleRequest(t, BASE, jar, path, form);

  async function signIn(): Promise<Jar> {
    const jar: Jar = new Map();
    await get(jar, '/console/login');
    const { res } = await get(jar, '/console/login', { _csrf: jar.get('tunnel_csrf')!, username: name, password: PASSWORD, next: '/console/connections' });
    assert.equal(res.status, 303);
    assert.ok(jar.has('tunnel_at') && jar.has('tunnel_rt'));
    return jar;
  }

  // Pages that make more than one API call after /v1/me (the connections page makes two, the audit page three).
  for (const path of ['/console/connections', '/console/audit']) {
    it(`renders ${path} with only the refresh token cookie left, and stores the new pair`, async () => {
      const jar = await signIn();
      const oldRt = jar.get('tunnel_rt');
      jar.delete('tunnel_at');
      const { res, set } = await get(jar, path);
      assert.equal(res.status, 200, `${res.status} ${res.headers.get('location') ?? ''}`);
      assert.ok(jar.has('tunnel_at'), 'a new access token cookie');
      assert.ok(jar.has('tunnel_rt') && jar.get('tunnel_rt') !== oldRt, 'the rotated refresh token cookie');
      assert.ok(!set.some((l) => /Max-Age=0/i.test(l)), 'no cookie is deleted');
      // And the next page works with the new pair as it is.
      assert.equal((await get(jar, path)).res.status, 200);
    });
  }

  it('renders a page whose access token cookie is still sent but has expired', async () => {
    const jar = await signIn();
    t.clock.advance((t.deps.settings.accessTokenTtl + 60) * 1000);
    const { res } = await get(jar, '/console/connections');
    assert.equal(res.status, 200, `${res.status} ${res.headers.get('location') ?? ''}`);
  });

  it('ends a console session idle for the idle timeout on the server: its refresh token is refused and the end audited', async () => {
    const idle = t.deps.settings.consoleIdleTimeout;
    assert.equal(idle, 12 * 3600, 'the default: 12 hours');
    const jar = await signIn();
    const rt = jar.get('tunnel_rt')!;
    // A CLI's password session, just as idle: not the console's, so it lives on.
    const cli = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: name, password: PASSWORD } });
    assert.equal(cli.status, 200);
    // Idle since its last possible request (the end of the access token issued with its refresh
    // token) by the database's clock, which judges it; the access token has expired, so the page refreshes.
    for (const token of [rt, cli.body.refresh_token as string]) {
      await t.deps.db.execute(
        sql`update refresh_tokens set created_at = now() - ${idle + t.deps.settings.accessTokenTtl + 1}::integer * interval '1 second'
            where token_hash = ${hashSecret(token)}`,
      );
    }
    t.clock.advance((t.deps.settings.accessTokenTtl + 60) * 1000);
    const { res } = await get(jar, '/console/connections');
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location') ?? '', /^\/console\/login/);
    // Not just the cookie: the refresh token itself no longer works, from anywhere.
    const direct = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: rt } });
    assert.equal(direct.status, 400);
    assert.equal(direct.body.code, 'INVALID_GRANT');
    const ended = (await t.deps.db.select().from(auditEvents)).filter((e) => e.type === 'auth.session_idle');
    assert.equal(ended.length, 1, 'the end is audited once');
    const renewed = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: cli.body.refresh_token } });
    assert.equal(renewed.status, 200, 'the CLI session is not a console session');
  });

  it('keeps a console session in use past the idle timeout: each refresh starts it again', async () => {
    const jar = await signIn();
    const step = (t.deps.settings.accessTokenTtl + 60) * 1000;
    const until = t.clock.now().getTime() + t.deps.settings.consoleIdleTimeout * 1000 * 2;
    while (t.clock.now().getTime() < until) {
      t.clock.advance(step);
      // Idleness is judged by the database's clock: the step passes there too, for every token
      // issued so far (a session not refreshed would be idle after a few of these).
      await t.deps.db.execute(sql`update refresh_tokens set created_at = created_at - ${step / 1000}::integer * interval '1 second'`);
      const { res } = await get(jar, '/console/exposures');
      assert.equal(res.status, 200, `${res.status} ${res.headers.get('location') ?? ''}`);
    }
  });

  it('ends a console session in use at its absolute life (refreshTokenTtl after sign-in), a CLI session not', async () => {
    const jar = await signIn();
    const cli = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: name, password: PASSWORD } });
    assert.equal(cli.status, 200);
    let cliRt = cli.body.refresh_token as string;
    const life = t.deps.settings.refreshTokenTtl * 1000;
    const step = (t.deps.settings.consoleIdleTimeout - 3600) * 1000;
    const end = t.clock.now().getTime() + life;
    while (t.clock.now().getTime() + step < end) {
      t.clock.advance(step);
      jar.delete('tunnel_at');
      const { res } = await get(jar, '/console/exposures');
      assert.equal(res.status, 200, `in use: ${res.status} ${res.headers.get('location') ?? ''}`);
      const r = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: cliRt } });
      assert.equal(r.status, 200);
      cliRt = r.body.refresh_token;
    }
    t.clock.advance(end - t.clock.now().getTime() + 1000);
    jar.delete('tunnel_at');
    const { res } = await get(jar, '/console/exposures');
    assert.equal(res.status, 303, 'past its life the console session is over');
    const r = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: cliRt } });
    assert.equal(r.status, 200, 'a CLI session in use goes on');
  });
});

describe('console: the idle timeout counts from the last request, not from the last refresh', () => {
  let t: TestApp;
  let name: string;

  before(async () => {
    // The lowest timeout allowed: as long as an access token lives.
    t = await createTestApp({ settings: { issuer: BASE, consoleIdleTimeout: 600, accessTokenTtl: 600 } });
    name = uniq('admin');
    await t.user(name, 'admin', PASSWORD);
  });
  after(async () => {
    await t?.close();
  });

  const get = async (jar: Jar, path: string, form?: Record<string, string>) => (await consoleRequest(t, BASE, jar, path, form)).res;

  it('keeps a console used every minute signed in for an hour, and ends it after the timeout without a request', async () => {
    const jar: Jar = new Map();
    await get(jar, '/console/login');
    const signIn = await get(jar, '/console/login', { _csrf: jar.get('tunnel_csrf')!, username: name, password: PASSWORD, next: '/console/exposures' });
    assert.equal(signIn.status, 303);
    for (let minute = 1; minute <= 60; minute++) {
      t.clock.advance(60_000);
      const res = await get(jar, '/console/exposures');
      // Signed out at minute 10 on the old code: the refresh the expired access token needed came 10 minutes after the last.
      assert.equal(res.status, 200, `minute ${minute}: ${res.status} ${res.headers.get('location') ?? ''}`);
    }
    // The last request used an access token that may have been fresh: 10 more minutes of it, then 10
    // idle, by the database's clock, which judges it (its refresh token dated so); the access token has expired.
    await t.deps.db.execute(sql`update refresh_tokens set created_at = now() - interval '1201 seconds' where token_hash = ${hashSecret(jar.get('tunnel_rt')!)}`);
    t.clock.advance(1200_000 + 1000);
    const res = await get(jar, '/console/exposures');
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location') ?? '', /^\/console\/login/);
  });
});
