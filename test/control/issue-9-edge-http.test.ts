/**
 * Issue 9, findings 4 to 7, through the real HTTP server (@hono/node-server on 127.0.0.1), on
 * PGlite and on a real Postgres: one limit and one answer on every password path, the client
 * address behind trusted proxies, bad input as 400 (never 500) with the database's reason in
 * the log, and HTTP semantics (405 + Allow, documented statuses, bodiless POSTs, nosniff).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { auditEvents } from '../../control/db/schema/index.js';
import { loadControlConfig } from '../../control/config.js';
import { clientFrom } from '../../control/http/client-address.js';
import { createJsonLogger } from '../../shared/logger.js';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, putExposure, uniq, type TestNode } from '../../control/testing/fixtures.js';
import { assertOk, assertProblem } from '../../control/testing/problem.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';
import type { ApiCall } from '../harness/control.js';

const PASSWORD = 'a long enough password';

/** The browser side of /device: a form POST, returning status and HTML. */
async function deviceForm(s: ServedApp, fields: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.url}/device`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: res.status, html: await res.text(), headers: res.headers };
}

let sources = 0;
/** Starts a device authorization from a source of its own (the endpoint is limited per source). */
async function startDevice(call: ApiCall): Promise<{ user_code: string; device_code: string }> {
  sources += 1;
  const r = await call('POST', '/v1/auth/device', { body: {}, headers: { 'x-forwarded-for': `192.0.2.${sources}` } });
  assertOk(r);
  return r.body;
}

/** A raw HTTP/1.1 request on a socket (to send exactly the headers a case needs), returning the head. */
function rawRequest(url: string, head: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => sock.write(head));
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`issue 9 findings 4-7 over HTTP (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    let admin: { id: string; name: string; token: string };
    before(async () => {
      // Every caller is 127.0.0.1 here; 127.0.0.1 is the trusted proxy that names the client.
      t = await makeApp({ settings: { authRateLimit: 3, trustProxy: ['127.0.0.1'] } });
      s = await serveTestApp(t);
      admin = await t.user(uniq('admin'), 'admin');
    });
    after(() => s?.close());
    const from = (ip: string, spoofed = '203.0.113.250') => ({ 'x-forwarded-for': `${spoofed}, ${ip}` });
    const login = (username: string, password: string, headers: Record<string, string>) =>
      s.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username, password }, headers });

    describe('finding 4: the /device form has the limits and the answer of every password path', () => {
      it('guesses through the token endpoint and the form count against one per-account limit', async () => {
        const u = await t.user(uniq('acct'), 'member', PASSWORD);
        const d = await startDevice(s.call);
        // Three wrong passwords from three sources: two on the token endpoint, one on the form.
        assertProblem(await login(u.name, 'wrong password 1', from('198.51.100.1')), 400, 'INVALID_CREDENTIALS');
        assertProblem(await login(u.name, 'wrong password 2', from('198.51.100.2')), 400, 'INVALID_CREDENTIALS');
        assert.equal((await deviceForm(s, { user_code: d.user_code, username: u.name, password: 'wrong 3' }, from('198.51.100.3'))).status, 401);
        // The account is now limited on both paths, from a fourth source, even with the right password.
        const form = await deviceForm(s, { user_code: d.user_code, username: u.name, password: PASSWORD }, from('198.51.100.4'));
        assert.equal(form.status, 429);
        assert.doesNotMatch(form.html, /name="ticket"/);
        assertProblem(await login(u.name, PASSWORD, from('198.51.100.5')), 429, 'RATE_LIMITED');
        // Another account from a fresh source is not affected.
        const v = await t.user(uniq('other'), 'member', PASSWORD);
        assertOk(await login(v.name, PASSWORD, from('198.51.100.6')));
      });

      it('the form is limited per source too, across accounts', async () => {
        const d = await startDevice(s.call);
        for (let i = 0; i < 3; i++) {
          const r = await deviceForm(s, { user_code: d.user_code, username: uniq('ghost'), password: 'x' }, from('198.51.100.20'));
          assert.equal(r.status, 401);
        }
        const u = await t.user(uniq('fresh'), 'member', PASSWORD);
        assert.equal((await deviceForm(s, { user_code: d.user_code, username: u.name, password: PASSWORD }, from('198.51.100.20'))).status, 429);
      });

      it('one answer for every failure: a right password with a wrong code looks like a wrong password', async () => {
        const d = await startDevice(s.call);
        const failures = [
          // The right password, a made-up code: this was the oracle (400 vs 401).
          async (src: string) => {
            const u = await t.user(uniq('rp'), 'member', PASSWORD);
            return deviceForm(s, { user_code: 'BBBB-CCCC', username: u.name, password: PASSWORD }, from(src));
          },
          async (src: string) => {
            const u = await t.user(uniq('wp'), 'member', PASSWORD);
            return deviceForm(s, { user_code: 'BBBB-CCCC', username: u.name, password: 'not it' }, from(src));
          },
          (src: string) => deviceForm(s, { user_code: 'BBBB-CCCC', username: uniq('nobody'), password: PASSWORD }, from(src)),
          (src: string) => deviceForm(s, { user_code: 'BBBB-CCCC', username: 'nul\u0000user', password: PASSWORD }, from(src)),
        ];
        const pages: { status: number; html: string }[] = [];
        for (const [i, f] of failures.entries()) pages.push(await f(`198.51.100.${40 + i}`));
        for (const p of pages) {
          assert.equal(p.status, 401, p.html);
          assert.doesNotMatch(p.html, /name="ticket"/);
        }
        assert.equal(new Set(pages.map((p) => p.html)).size, 1, 'every failure renders the same page');
        // And the real code with the right password still works (the limits were per source and per account).
        const u = await t.user(uniq('ok'), 'member', PASSWORD);
        const ok = await deviceForm(s, { user_code: d.user_code, username: u.name, password: PASSWORD }, from('198.51.100.60'));
        assert.equal(ok.status, 200, ok.html);
        assert.match(ok.html, /name="ticket"/);
      });
    });

    describe('finding 5: X-Forwarded-For counts only what trusted proxies saw', () => {
      it('changing the client-written entries does not evade the per-source limit', async () => {
        for (let i = 0; i < 3; i++) {
          assertOk(await s.call('POST', '/v1/auth/device', { body: {}, headers: from('192.0.2.77', `10.0.0.${i}`) }));
        }
        const spoofed = await s.call('POST', '/v1/auth/device', { body: {}, headers: from('192.0.2.77', '10.0.0.99') });
        assertProblem(spoofed, 429, 'RATE_LIMITED');
        assertOk(await s.call('POST', '/v1/auth/device', { body: {}, headers: from('192.0.2.78') }));
      });

      it('IPv6 addresses of one /64 are one source: rotating through them does not evade the per-source limits', async () => {
        // One host holds a whole /64: each request below comes from a fresh address in 2001:db8:9:1::/64.
        const net = (i: number) => `2001:db8:9:1:${i.toString(16)}::${i + 1}`;
        for (let i = 0; i < 3; i++) assertOk(await s.call('POST', '/v1/auth/device', { body: {}, headers: from(net(i)) }));
        assertProblem(await s.call('POST', '/v1/auth/device', { body: {}, headers: from(net(3)) }), 429, 'RATE_LIMITED');
        assertProblem(await s.call('POST', '/v1/auth/device', { body: {}, headers: from('2001:DB8:9:1:ffff:ffff:ffff:ffff') }), 429, 'RATE_LIMITED');
        assertOk(await s.call('POST', '/v1/auth/device', { body: {}, headers: from('2001:db8:9:2::1') })); // the next /64: another source
        // Password guesses at made-up accounts (one hash each): the per-source limit holds across the /64 too.
        const spray = (i: number) => login(uniq('ghost'), 'guess', from(`2001:db8:7:7::${i.toString(16)}`));
        for (let i = 0; i < 3; i++) assertProblem(await spray(i), 400, 'INVALID_CREDENTIALS');
        assertProblem(await spray(3), 429, 'RATE_LIMITED');
      });
    });

    describe('finding 6: bad input is a 400 at the edge, never a 500', () => {
      let node: TestNode;
      before(async () => {
        node = await enrollNode({ ...t, call: s.call }, admin.token);
      });
      const heartbeat = (body: Record<string, unknown>) =>
        s.call('POST', '/v1/nodes/self/heartbeat', {
          token: node.token,
          body: { version: 't', native_crypto: true, egress_driver: 'off', connections: 0, exposures: [], ...body },
        });
      const event = (e: Record<string, unknown>) =>
        s.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: [{ type: 'conn_open', at: new Date().toISOString(), ...e }] } });
      /** An event is refused on its own (the batch's others recorded): 202 with it in `rejected`. */
      const refusedEvent = async (e: Record<string, unknown>, field: string) => {
        const r = await event(e);
        assert.equal(r.status, 202, JSON.stringify(r.body));
        assert.deepEqual(r.body, { accepted: 0, rejected: [{ index: 0, code: 'VALIDATION_FAILED', field }] });
      };

      it('NUL bytes in any string', async () => {
        assertProblem(await s.call('POST', '/v1/auth/device', { body: { client_name: 'cli\u0000' } }), 400, 'VALIDATION_FAILED');
        const target = { node: node.name, host: 'db\u0000.internal', port: 5432, allow: [] };
        assertProblem(await s.call('PUT', `/v1/egress-targets/${uniq('tgt')}`, { token: admin.token, body: target }), 400, 'VALIDATION_FAILED');
        assertProblem(await heartbeat({ version: '1.0\u0000' }), 400, 'VALIDATION_FAILED');
        for (const field of ['lease_id', 'session_id', 'remote', 'reason']) {
          await refusedEvent({ [field]: `x\u0000y` }, field);
        }
        assertProblem(await s.call('POST', '/v1/users', { token: admin.token, body: { name: uniq('u'), password: `${PASSWORD}\u0000` } }), 400, 'VALIDATION_FAILED');
        assertProblem(await login('nobody', `x\u0000`, from('192.0.2.90')), 400, 'VALIDATION_FAILED');
        // Other control characters and a lone surrogate are refused the same way.
        assertProblem(await heartbeat({ version: '1.0\u001b[31m' }), 400, 'VALIDATION_FAILED');
        assertProblem(await s.call('POST', '/v1/auth/device', { body: '{"client_name":"\\ud800"}' }), 400, 'VALIDATION_FAILED');
      });

      it('integers beyond their column and timestamps Postgres cannot hold', async () => {
        assertProblem(await heartbeat({ connections: 3_000_000_000 }), 400, 'VALIDATION_FAILED');
        assertProblem(await heartbeat({ connections: 2 ** 53 + 2 }), 400, 'VALIDATION_FAILED');
        assertOk(await heartbeat({ connections: 2_147_483_647 }));
        for (const at of ['99999-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '0000-01-01T00:00:00Z', '1969-12-31T23:59:59Z', 'yesterday', '2026-02-30T25:00:00Z']) {
          await refusedEvent({ at }, 'at');
        }
        assert.equal((await event({ at: '2026-01-01T00:00:00.123+02:00', bytes_in: 2 ** 40 })).status, 202);
        await refusedEvent({ bytes_in: 2 ** 60 }, 'bytes_in');
      });

      it('a timestamp whose year is 9999 as written but 10000 in UTC, and audit bounds out of range', async () => {
        // 9999-12-31T23:59:59-23:59 is 10000-01-01T23:58:59Z: it passed the year-9999 pattern and
        // failed in the database (a Date writes it +010000-...): a 500 that lost the whole batch.
        await refusedEvent({ at: '9999-12-31T23:59:59-23:59' }, 'at');
        assert.equal((await event({ at: '9999-12-31T23:59:59+23:59' })).status, 202);
        assertProblem(await heartbeat({ started_at: '9999-12-31T23:30:00-01:00' }), 400, 'VALIDATION_FAILED');
        // The audit log's since/until took any four-digit year: year 0 and year 10000 were 500s.
        for (const at of ['0000-01-01T00:00:00Z', '9999-12-31T23:59:59-23:59', '0001-01-01T00:00:00+00:01']) {
          for (const k of ['since', 'until']) {
            assertProblem(await s.call('GET', `/v1/audit?${k}=${encodeURIComponent(at)}`, { token: admin.token }), 400, 'VALIDATION_FAILED');
          }
        }
        assertOk(await s.call('GET', `/v1/audit?since=${encodeURIComponent('1970-01-01T00:00:00Z')}&until=${encodeURIComponent('9999-12-31T23:59:59Z')}`, { token: admin.token }));
      });

      it('the log gives the database error its reason (code, message) and never its parameters', async () => {
        const lines: string[] = [];
        const logger = createJsonLogger((l) => lines.push(l));
        const err = await t.deps.db
          .insert(auditEvents)
          .values({ at: new Date(), type: 'secret-marker-value\u0000', data: {} })
          .then(() => null, (e: unknown) => e);
        assert.ok(err instanceof Error, 'a NUL byte straight to the database fails');
        logger.error('unhandled error', { err });
        const logged = JSON.parse(lines[0]!) as { err: { message: string; query?: string; cause?: { code?: string; message?: string } } };
        assert.ok(!lines[0]!.includes('secret-marker-value'), `no parameters in the log: ${lines[0]}`);
        assert.match(logged.err.query ?? '', /insert into "audit_events"/);
        assert.match(logged.err.cause?.code ?? '', /^22/, `SQLSTATE data exception: ${lines[0]}`);
        assert.ok((logged.err.cause?.message ?? '').length > 0);
      });
    });

    describe('finding 8: the OAuth endpoints speak forms and RFC 6749 errors', () => {
      const form = (path: string, fields: string, headers: Record<string, string> = {}) =>
        s.call('POST', path, { body: fields, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });

      it('device authorization and the password and refresh grants take form bodies', async () => {
        const dev = await form('/v1/auth/device', 'client_id=some-client&scope=openid', from('192.0.2.150'));
        assertOk(dev);
        assert.match(dev.body.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
        const u = await t.user(uniq('formy'), 'member', PASSWORD);
        const pw = await form('/v1/auth/token', new URLSearchParams({ grant_type: 'password', username: u.name, password: PASSWORD, client_id: 'x' }).toString(), from('192.0.2.151'));
        assertOk(pw);
        assert.equal(pw.headers.get('cache-control'), 'no-store');
        assert.equal(pw.headers.get('pragma'), 'no-cache');
        const rt = await form('/v1/auth/token', new URLSearchParams({ grant_type: 'refresh_token', refresh_token: pw.body.refresh_token }).toString());
        assertOk(rt);
        const poll = await form('/v1/auth/token', new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: dev.body.device_code }).toString());
        assertProblem(poll, 400, 'AUTHORIZATION_PENDING');
      });

      it('errors are RFC 6749 §5.2 application/json with error and error_description', async () => {
        const cases: [Awaited<ReturnType<typeof form>>, string][] = [
          [await form('/v1/auth/token', 'grant_type=password&username=nobody&password=x', from('192.0.2.160')), 'invalid_grant'],
          [await form('/v1/auth/token', 'grant_type=magic'), 'unsupported_grant_type'],
          [await form('/v1/auth/token', 'grant_type=refresh_token&refresh_token=a&refresh_token=b'), 'invalid_request'],
          [await form('/v1/auth/token', 'grant_type=refresh_token'), 'invalid_request'],
          [await s.call('POST', '/v1/auth/token', { body: 'x', headers: { 'content-type': 'text/plain' } }), 'invalid_request'],
          [await form('/v1/auth/device', 'client_name=%00'), 'invalid_request'],
        ];
        for (const [r, error] of cases) {
          assert.equal(r.status, r.status === 415 ? 415 : 400, JSON.stringify(r.body));
          assert.match(r.headers.get('content-type') ?? '', /^application\/json/, JSON.stringify(r.body));
          assert.equal(r.body.error, error, JSON.stringify(r.body));
          assert.equal(typeof r.body.error_description, 'string');
          assert.equal(typeof r.body.code, 'string', 'the problem members stay, for the CLI');
          assert.equal(r.headers.get('www-authenticate'), null);
        }
        // Elsewhere errors stay problem+json.
        assertProblem(await s.call('GET', '/v1/me'), 401, 'UNAUTHENTICATED');
      });

      it('publishes RFC 8414 metadata naming the endpoints', async () => {
        const m = await s.call('GET', '/.well-known/oauth-authorization-server');
        assertOk(m);
        assert.equal(m.body.issuer, t.deps.settings.issuer);
        assert.equal(m.body.token_endpoint, `${t.deps.settings.issuer}/v1/auth/token`);
        assert.equal(m.body.device_authorization_endpoint, `${t.deps.settings.issuer}/v1/auth/device`);
        assert.deepEqual(m.body.token_endpoint_auth_methods_supported, ['none']);
      });
    });

    describe('finding 7: HTTP semantics', () => {
      it('a wrong method on a known path is 405 with Allow; an unknown path stays 404', async () => {
        const del = await s.call('DELETE', '/v1/me', { token: admin.token });
        assertProblem(del, 405, 'METHOD_NOT_ALLOWED');
        assert.equal(del.headers.get('allow'), 'GET, HEAD');
        const put = await s.call('PUT', '/v1/leases', { token: admin.token, body: {} });
        assertProblem(put, 405, 'METHOD_NOT_ALLOWED');
        assert.equal(put.headers.get('allow'), 'GET, HEAD, POST');
        const name = uniq('exp');
        await putExposure({ ...t, call: s.call }, admin.token, name);
        const post = await s.call('POST', `/v1/exposures/${name}`, { token: admin.token, body: {} });
        assertProblem(post, 405, 'METHOD_NOT_ALLOWED');
        assert.equal(post.headers.get('allow'), 'DELETE, GET, HEAD, PUT');
        assertProblem(await s.call('GET', '/v1/no-such-thing', { token: admin.token }), 404, 'NOT_FOUND');
      });

      it('every response says nosniff (JSON, problems, HTML pages, 404s)', async () => {
        const responses = [
          await s.call('GET', '/v1/me', { token: admin.token }),
          await s.call('GET', '/v1/me'),
          await s.call('GET', '/nope'),
          await s.call('GET', '/device'),
          await s.call('GET', '/openapi.json'),
          await s.call('GET', '/.well-known/jwks.json'),
        ];
        for (const r of responses) {
          assert.equal(r.headers.get('x-content-type-options'), 'nosniff', `${r.status}`);
          assert.equal(r.headers.get('x-frame-options'), 'DENY');
          assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
          assert.ok(r.headers.get('content-security-policy'));
        }
        assert.equal(responses[0]!.headers.get('cache-control'), 'no-store');
        assert.match(responses[3]!.headers.get('content-security-policy') ?? '', /form-action 'self'/, '/device keeps its own CSP');
      });

      it('a bodiless POST is fine where the body is optional, with or without Content-Length', async () => {
        for (const framing of ['', 'Content-Length: 0\r\n', 'Transfer-Encoding: chunked\r\n']) {
          const u = await t.user(uniq('out'), 'member', PASSWORD);
          const head = await rawRequest(
            s.url,
            `POST /v1/auth/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${u.token}\r\n${framing}Connection: close\r\n\r\n${framing.startsWith('Transfer') ? '0\r\n\r\n' : ''}`,
          );
          assert.match(head, /^HTTP\/1\.1 204 /, `${JSON.stringify(framing)}: ${head}`);
        }
        // A body that is there but not JSON is still refused.
        const u = await t.user(uniq('out'), 'member', PASSWORD);
        const head = await rawRequest(
          s.url,
          `POST /v1/auth/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${u.token}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
        );
        assert.match(head, /^HTTP\/1\.1 415 /);
      });

      it('the OpenAPI document gives every operation its 429 and 500, and POST /v1/leases its 503', async () => {
        const doc = (await s.call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
        for (const [path, item] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(item)) {
            assert.ok(op.responses['500'], `${method} ${path} documents 500`);
            if (path.startsWith('/v1/')) assert.ok(op.responses['429'], `${method} ${path} documents 429`);
          }
        }
        assert.ok(doc.paths['/v1/leases']!.post!.responses['503']);
      });
    });
  });
}

describe('finding 5: picking the client from X-Forwarded-For (pure)', () => {
  it('hops: the entry the last trusted hop saw, whatever the client wrote before it', () => {
    assert.equal(clientFrom('10.0.0.1', '6.6.6.6, 192.0.2.9', 1), '192.0.2.9');
    assert.equal(clientFrom('10.0.0.1', '6.6.6.6, 192.0.2.9, 10.0.0.2', 2), '192.0.2.9');
    assert.equal(clientFrom('10.0.0.1', '192.0.2.9', 5), '192.0.2.9', 'fewer entries than hops: the farthest one');
    assert.equal(clientFrom('10.0.0.1', undefined, 1), '10.0.0.1');
    assert.equal(clientFrom('10.0.0.1', '192.0.2.9', 0), '10.0.0.1', 'no trust: the socket peer');
  });
  it('networks: walks right to left while the address is a trusted proxy', () => {
    const trust = ['10.0.0.0/8', '127.0.0.1'];
    assert.equal(clientFrom('127.0.0.1', '6.6.6.6, 192.0.2.9, 10.1.2.3', trust), '192.0.2.9');
    assert.equal(clientFrom('192.0.2.1', '6.6.6.6', trust), '192.0.2.1', 'an untrusted peer is the client');
    assert.equal(clientFrom('127.0.0.1', '192.0.2.9, garbage', trust), '127.0.0.1', 'garbage stops the walk at the proxy');
    assert.equal(clientFrom('127.0.0.1', '[2001:db8::1]:443', trust), '2001:db8::1');
    assert.equal(clientFrom('127.0.0.1', '192.0.2.9:5555', trust), '192.0.2.9');
    assert.equal(clientFrom('127.0.0.1', '10.0.0.7, 10.0.0.8', trust), '10.0.0.7', 'all trusted: the farthest one');
  });
  it('--trust-proxy takes hops or networks, and refuses anything else with a hint', () => {
    const cfg = (v: string) => loadControlConfig(['--trust-proxy', v], {}).trustProxy;
    assert.equal(cfg('1'), 1);
    assert.equal(cfg('0'), 0);
    assert.deepEqual(cfg('10.0.0.0/8, 127.0.0.1,::1'), ['10.0.0.0/8', '127.0.0.1', '::1']);
    assert.equal(loadControlConfig([], { TUNNEL_TRUST_PROXY: 'true' }).trustProxy, 1);
    assert.equal(loadControlConfig([], {}).trustProxy, 0);
    assert.throws(() => cfg('10.0.0.0/33'), /trust-proxy/);
    assert.throws(() => cfg('proxy.example'), /trust-proxy/);
  });
});

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
