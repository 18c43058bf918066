/**
 * Device login (RFC 8628) end to end over real HTTP, as `tunnel login` and a browser do it,
 * against the real `tunnel-control` binary: start, poll (authorization_pending, slow_down),
 * sign in on GET/POST /device, approve or deny with the signed ticket, poll again for tokens
 * (or access_denied), then GET /v1/me. Expiry uses an in-process app with a ManualClock served
 * by @hono/node-server on 127.0.0.1, so it is still real HTTP but needs no waiting.
 *
 * Between polls the client waits the `interval` the server announced (5 s on the binary), as
 * RFC 8628 §3.5 requires: that wait is part of the protocol under test, not a synchronisation
 * sleep. A poll that does not wait is how the test provokes slow_down.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { GRANT_DEVICE_CODE } from '../../protocol/api-types.js';
import { createTestApp, type TestApp } from '../../control/testing/test-app.js';
import { ManualClock } from '../../shared/clock.js';
import {
  expectStatus,
  httpCaller,
  passwordLogin,
  startControlProcess,
  type ApiCall,
  type ApiResult,
  type ControlProcess,
} from '../harness/control.js';
import { postForm, signInOnDevicePage, type DeviceStart } from '../harness/device-page.js';

const PASSWORD = 'correct horse battery staple';


async function startDevice(call: ApiCall, clientName = 'device-login test'): Promise<DeviceStart> {
  const r = expectStatus(await call('POST', '/v1/auth/device', { body: { client_name: clientName } }), 200, 'device authorization');
  assert.match(r.headers.get('cache-control') ?? '', /no-store/);
  return r.body as DeviceStart;
}

function poll(call: ApiCall, deviceCode: string): Promise<ApiResult> {
  return call('POST', '/v1/auth/token', { body: { grant_type: GRANT_DEVICE_CODE, device_code: deviceCode } });
}

/** Asserts an RFC 8628 token-endpoint error: RFC 6749 §5.2 JSON with `error`, plus the problem members. */
function assertOAuthError(r: ApiResult, error: string): void {
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(typeof r.body.error_description, 'string');
  assert.equal(r.body.error, error, JSON.stringify(r.body));
  assert.equal(r.body.code, error.toUpperCase());
  assert.equal(r.body.status, 400);
  assert.equal(typeof r.body.request_id, 'string');
}

describe('device login against the real tunnel-control binary', () => {
  let control: ControlProcess | undefined;
  let call: ApiCall;
  let base: string;

  before(async () => {
    control = await startControlProcess();
    base = control.url;
    call = httpCaller(base);
    expectStatus(
      await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: 'admin', password: PASSWORD } }),
      201,
      'setup',
    );
    const admin = await passwordLogin(call, 'admin', PASSWORD);
    expectStatus(await call('POST', '/v1/users', { token: admin, body: { name: 'alice', password: PASSWORD } }), 201, 'create alice');
  });

  after(async () => {
    await control?.stop();
    control?.cleanup();
  });

  it('pending, approve on the page, then tokens; GET /v1/me shows the user', async () => {
    const dev = await startDevice(call);
    assert.equal(dev.interval, 5);
    assert.match(dev.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.equal(dev.verification_uri, `${base}/device`);
    assertOAuthError(await poll(call, dev.device_code), 'authorization_pending');

    const ticket = await signInOnDevicePage(base, dev, 'alice', PASSWORD);
    const decided = await postForm(base, '/device/decision', { ticket, decision: 'approve' });
    assert.equal(decided.status, 200, decided.html);
    assert.match(decided.html, /Device approved/);
    // A replayed decision is refused: the code is no longer pending.
    const replay = await postForm(base, '/device/decision', { ticket, decision: 'deny' });
    assert.equal(replay.status, 400, replay.html);

    await sleep(dev.interval * 1000);
    const tokens = expectStatus(await poll(call, dev.device_code), 200, 'device token');
    assert.equal(tokens.body.token_type, 'Bearer');
    assert.equal(typeof tokens.body.refresh_token, 'string');
    assert.ok(tokens.body.expires_in > 0);

    const me = expectStatus(await call('GET', '/v1/me', { token: tokens.body.access_token }), 200, 'me');
    assert.equal(me.body.name, 'alice');
    assert.equal(me.body.role, 'member');

    // The device code is single use: a replay (which would not wait the interval) is refused.
    assertOAuthError(await poll(call, dev.device_code), 'invalid_grant');
  });

  it('a poll that does not wait the interval gets slow_down', async () => {
    const dev = await startDevice(call);
    assertOAuthError(await poll(call, dev.device_code), 'authorization_pending');
    assertOAuthError(await poll(call, dev.device_code), 'slow_down');
  });

  it('deny on the page: the next poll gets access_denied', async () => {
    const dev = await startDevice(call);
    assertOAuthError(await poll(call, dev.device_code), 'authorization_pending');
    const ticket = await signInOnDevicePage(base, dev, 'alice', PASSWORD);
    const decided = await postForm(base, '/device/decision', { ticket, decision: 'deny' });
    assert.equal(decided.status, 200, decided.html);
    assert.match(decided.html, /Sign-in denied/);
    await sleep(dev.interval * 1000);
    assertOAuthError(await poll(call, dev.device_code), 'access_denied');
  });

  it('a wrong password on the page gives no ticket, and the code stays pending', async () => {
    const dev = await startDevice(call);
    const r = await postForm(base, '/device', { user_code: dev.user_code, username: 'alice', password: 'not the password' });
    assert.equal(r.status, 401);
    assert.doesNotMatch(r.html, /name="ticket"/);
    assertOAuthError(await poll(call, dev.device_code), 'authorization_pending');
  });
});

describe('device login expiry (ManualClock app over real HTTP)', () => {
  let t: TestApp | undefined;
  let server: ServerType | undefined;
  let call: ApiCall;
  let base: string;

  before(async () => {
    t = await createTestApp({ clock: new ManualClock(new Date()) });
    const app = t.app;
    server = await new Promise<ServerType>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
      s.once('error', reject);
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    call = httpCaller(base);
    await t.user('bob', 'member', PASSWORD);
  });

  after(async () => {
    if (server) {
      const s = server;
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    await t?.close();
  });

  it('a code polled after expires_in gets expired_token, and can no longer be approved', async () => {
    const dev = await startDevice(call);
    assertOAuthError(await poll(call, dev.device_code), 'authorization_pending');
    t!.clock.advance((dev.expires_in + 1) * 1000);
    assertOAuthError(await poll(call, dev.device_code), 'expired_token');
    const page = await postForm(base, '/device', { user_code: dev.user_code, username: 'bob', password: PASSWORD });
    assert.equal(page.status, 401, page.html);
    assert.doesNotMatch(page.html, /name="ticket"/);
  });
});
