/**
 * A standard OAuth client from npm (openid-client 6, on oauth4webapi) against the real
 * `tunnel-control` binary (issue 9, finding 8 and must-show 4). The client knows nothing but the
 * issuer URL: it reads the RFC 8414 metadata, starts a device authorization (RFC 8628 §3.1, a
 * form body), polls the token endpoint (§3.4, a form body) while a person approves on the /device
 * page over HTTP, and gets tokens; the password and refresh grants also go form-encoded, and
 * errors come back as RFC 6749 §5.2 JSON that the client parses into `error`.
 *
 * The client waits the `interval` the server announced between polls (5 s): that is the protocol
 * under test, not a synchronisation sleep.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { AUTHORIZATION_SERVER_METADATA_PATH } from '../../protocol/api-types.js';
import { expectStatus, httpCaller, passwordLogin, startControlProcess, type ApiCall, type ControlProcess } from '../harness/control.js';
import { approveOnDevicePage, postForm, signInOnDevicePage } from '../harness/device-page.js';

const PASSWORD = 'correct horse battery staple';

describe('openid-client against the real tunnel-control binary', () => {
  let control: ControlProcess | undefined;
  let call: ApiCall;
  let config: oidc.Configuration;

  before(async () => {
    control = await startControlProcess();
    call = httpCaller(control.url);
    expectStatus(await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: 'admin', password: PASSWORD } }), 201, 'setup');
    const admin = await passwordLogin(call, 'admin', PASSWORD);
    expectStatus(await call('POST', '/v1/users', { token: admin, body: { name: 'olga', password: PASSWORD } }), 201, 'create olga');
    // From the issuer alone: RFC 8414 metadata (algorithm 'oauth2'), a public client (no secret).
    config = await oidc.discovery(new URL(control.url), 'tunnel-interop-test', undefined, oidc.None(), {
      algorithm: 'oauth2',
      execute: [oidc.allowInsecureRequests],
    });
  });

  after(async () => {
    await control?.stop();
    control?.cleanup();
  });

  it('discovers the endpoints from the RFC 8414 metadata', async () => {
    const meta = config.serverMetadata();
    assert.equal(new URL(meta.issuer).href, new URL(control!.url).href);
    assert.equal(meta.device_authorization_endpoint, `${control!.url}/v1/auth/device`);
    assert.equal(meta.token_endpoint, `${control!.url}/v1/auth/token`);
    assert.ok(meta.grant_types_supported?.includes('urn:ietf:params:oauth:grant-type:device_code'));
    const raw = await call('GET', AUTHORIZATION_SERVER_METADATA_PATH);
    assert.match(raw.headers.get('content-type') ?? '', /^application\/json/);
  });

  it('completes a device login: authorize, approve on /device over HTTP, poll for tokens', async () => {
    const dev = await oidc.initiateDeviceAuthorization(config, {});
    assert.match(dev.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.ok(dev.verification_uri_complete);
    const polled = oidc.pollDeviceAuthorizationGrant(config, dev);
    await approveOnDevicePage(control!.url, { user_code: dev.user_code, verification_uri_complete: dev.verification_uri_complete! }, 'olga', PASSWORD);
    const tokens = await polled;
    assert.equal(tokens.token_type, 'bearer');
    assert.ok(tokens.refresh_token);
    assert.ok((tokens.expiresIn() ?? 0) > 0);
    const me = await call('GET', '/v1/me', { token: tokens.access_token });
    assert.equal(me.status, 200);
    assert.equal(me.body.name, 'olga');

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal((await call('GET', '/v1/me', { token: refreshed.access_token })).status, 200);
  });

  it('a denied device login fails in the client with access_denied', async () => {
    const dev = await oidc.initiateDeviceAuthorization(config, {});
    const polled = oidc.pollDeviceAuthorizationGrant(config, dev).then(
      () => assert.fail('a denied login must not give tokens'),
      (err: unknown) => err,
    );
    const ticket = await signInOnDevicePage(control!.url, { user_code: dev.user_code, verification_uri_complete: dev.verification_uri_complete! }, 'olga', PASSWORD);
    assert.equal((await postForm(control!.url, '/device/decision', { ticket, decision: 'deny' })).status, 200);
    const err = await polled;
    assert.ok(err instanceof oidc.ResponseBodyError, String(err));
    assert.equal(err.error, 'access_denied');
  });

  it('the password grant works form-encoded, and a wrong password is invalid_grant', async () => {
    const tokens = await oidc.genericGrantRequest(config, 'password', { username: 'olga', password: PASSWORD });
    assert.equal((await call('GET', '/v1/me', { token: tokens.access_token })).body.name, 'olga');
    const err = await oidc.genericGrantRequest(config, 'password', { username: 'olga', password: 'not the password' }).then(
      () => assert.fail('a wrong password must not give tokens'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof oidc.ResponseBodyError, String(err));
    assert.equal(err.error, 'invalid_grant');
    assert.equal(err.status, 400);
  });
});
