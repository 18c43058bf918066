/**
 * Public documents and operator endpoints: JWKS, /healthz, /metrics, /openapi.json, /docs,
 * and the audit log (pagination, and that no secret ever lands in it or in an error body).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { JwksSchema, JWK_USE_LEASE, JWK_USE_SSH_CA } from '../../protocol/jwks.js';
import { prepareSetupCode } from '../auth/setup-code.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { assertNoSecrets, assertOk, assertProblem, type CallResult } from '../testing/problem.js';
import { serveMetrics } from '../http/metrics-server.js';
import { enrollNode, heartbeat, issueLease, putExposure, serviceAccess, tokenFor, uniq } from '../testing/fixtures.js';
import { API_LEVEL, API_LEVEL_MIN, TUNNEL_VERSION } from '../../protocol/api-level.js';
import { ed25519Seed } from '../../protocol/ssh-key.js';

let t: TestApp;
let admin: { id: string; name: string; token: string };
before(async () => {
  t = await createTestApp();
  admin = await t.user(uniq('admin'), 'admin');
});
after(() => t.close());

describe('GET /.well-known/jwks.json', () => {
  it('publishes one Ed25519 key of each kind, public parts only, cacheable', async () => {
    const res = await t.call('GET', '/.well-known/jwks.json');
    assertOk(res);
    assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/);
    const jwks = JwksSchema.parse(res.body);
    assert.deepEqual(jwks.keys.map((k) => k.use).sort(), [JWK_USE_LEASE, JWK_USE_SSH_CA].sort());
    for (const k of res.body.keys) assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    const signing = await t.deps.keys.signing('sig');
    const d = ed25519Seed(signing.privateKey).toString('base64url');
    assertNoSecrets(res.body, [d], 'JWKS');
    assert.ok(jwks.keys.some((k) => k.kid === signing.kid));
  });
});

describe('/healthz and /metrics', () => {
  it('/healthz reports the database, the release and the API levels served', async () => {
    const ok = await t.call('GET', '/healthz');
    assertOk(ok);
    assert.deepEqual(ok.body, { status: 'ok', database: 'ok', version: TUNNEL_VERSION, api_levels: { min: API_LEVEL_MIN, max: API_LEVEL } });
  });

  it('/metrics is not on the API: a stranger reads no counters there (404, nothing rendered)', async () => {
    await t.call('GET', '/v1/me');
    for (const path of ['/metrics', '/metrics/', '/v1/metrics']) {
      const res = await t.call('GET', path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(typeof res.body === 'string' ? res.body : JSON.stringify(res.body), /tunnel_control_/, path);
    }
  });

  it('--metrics-listen serves /metrics apart: requests by route and status and leases by kind, in Prometheus text format', async () => {
    const metrics = await serveMetrics(t.deps, '127.0.0.1', 0);
    try {
      await t.call('GET', '/v1/me', { token: await tokenFor(t, admin) });
      await t.call('GET', '/v1/me');
      const node = await enrollNode(t, await tokenFor(t, admin));
      await heartbeat(t, node);
      const e = uniq('m-');
      await putExposure(t, await tokenFor(t, admin), e);
      await issueLease(t, await tokenFor(t, admin), { kind: 'expose', exposure: e });
      const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      for (const line of text.trim().split('\n')) {
        assert.match(line, /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \d+)$/, line);
      }
      assert.match(text, /tunnel_control_http_requests_total\{method="GET",route="\/v1\/me",status="200"\} [1-9]/);
      assert.match(text, /tunnel_control_http_requests_total\{method="GET",route="\/v1\/me",status="401"\} [1-9]/);
      assert.match(text, /tunnel_control_leases_issued_total\{kind="expose"\} [1-9]/);
      assert.match(text, /^tunnel_control_revocation_polls_waiting \d+$/m);
      assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/v1/me`)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await metrics.close();
    }
  });
});

describe('/openapi.json and /docs', () => {
  let doc: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a JSON document
  before(async () => {
    const res = await t.call('GET', '/openapi.json');
    assertOk(res);
    doc = res.body;
  });

  it('is an OpenAPI 3.1 document listing every /v1 route the app serves', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(typeof doc.info.title, 'string');
    assert.equal(typeof doc.info.version, 'string');
    const served = new Set(
      t.app.routes
        .filter((r) => r.path.startsWith('/v1/') && r.method !== 'ALL')
        .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z_]+)/g, '{$1}')}`),
    );
    const documented = new Set(
      Object.entries(doc.paths as Record<string, object>).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)),
    );
    assert.ok(served.size >= 25, `found ${served.size} /v1 routes`);
    for (const r of served) assert.ok(documented.has(r), `${r} is not in /openapi.json`);
  });

  it('is internally consistent: path parameters, responses, security schemes and $refs', () => {
    const schemes = Object.keys(doc.components?.securitySchemes ?? {});
    assert.deepEqual(schemes.sort(), ['bearer', 'nodeToken']);
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) { // eslint-disable-line @typescript-eslint/no-explicit-any
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${path}`;
        assert.ok(op.summary, `${where} has a summary`);
        assert.ok(Array.isArray(op.tags) && op.tags.length > 0, `${where} has tags`);
        assert.ok(Object.keys(op.responses ?? {}).some((s) => /^2\d\d$/.test(s)), `${where} has a success response`);
        const declared = (op.parameters ?? []).filter((p: { in: string }) => p.in === 'path');
        assert.deepEqual(declared.map((p: { name: string }) => p.name).sort(), [...templated].sort(), `${where} path params`);
        for (const p of declared) assert.equal(p.required, true, `${where} ${p.name} required`);
        for (const s of op.security ?? []) for (const name of Object.keys(s)) assert.ok(schemes.includes(name), `${where} uses ${name}`);
        if (op.requestBody) assert.ok(op.requestBody.content['application/json'], `${where} takes JSON`);
        if (path.startsWith('/v1/') && op.security) {
          assert.ok(op.responses['401']?.content['application/problem+json'], `${where} documents problem+json errors`);
        }
      }
    }
    const text = JSON.stringify(doc);
    for (const [, ref] of text.matchAll(/"\$ref":"#\/([^"]+)"/g)) {
      const target = ref!.split('/').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc);
      assert.ok(target, `$ref #/${ref} resolves`);
    }
  });

  it('/docs renders every operation from the document', async () => {
    const res = await t.call('GET', '/docs');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const html = res.body as string;
    for (const path of Object.keys(doc.paths)) assert.ok(html.includes(`<code>${path}</code>`), `${path} on /docs`);
    assert.ok(!/<script/i.test(html), 'no scripts');
  });
});

describe('GET /v1/audit', () => {
  it('pages oldest first with a cursor', async () => {
    const token = await tokenFor(t, admin);
    for (let i = 0; i < 3; i++) await t.call('POST', '/v1/users', { token, body: { name: uniq('aud') } });
    const all = (await t.call('GET', '/v1/audit?limit=1000', { token })).body;
    assert.equal(all.next_cursor, null);
    const ids = all.events.map((e: { id: string }) => Number(e.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    const first = (await t.call('GET', '/v1/audit?limit=2', { token })).body;
    assert.equal(first.events.length, 2);
    assert.equal(first.next_cursor, first.events[1].id);
    const second = (await t.call('GET', `/v1/audit?limit=2&after=${first.next_cursor}`, { token })).body;
    assert.deepEqual(second.events, all.events.slice(2, 4));
    assertProblem(await t.call('GET', '/v1/audit?limit=5000', { token }), 400, 'VALIDATION_FAILED');
    assertProblem(await t.call('GET', '/v1/audit?after=abc', { token }), 400, 'VALIDATION_FAILED');
  });
});

describe('secrets never leak', () => {
  it('no token, key, code or password appears in the audit log or in error bodies', async () => {
    const fresh = await createTestApp();
    try {
      const s = fresh;
      const code = (await prepareSetupCode(s.deps))!;
      const pw = 'the-admin-password-1';
      assertOk(await s.call('POST', '/v1/setup', { body: { setup_code: code, name: 'root', password: pw } }), 201);
      const errors: CallResult[] = [];
      errors.push(await s.call('POST', '/v1/setup', { body: { setup_code: code, name: 'root2', password: pw } }));
      errors.push(await s.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: 'root', password: `${pw}x` } }));
      const session = (await s.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: 'root', password: pw } })).body;
      const rotated = (await s.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: session.refresh_token } })).body;
      // Reuse past the grace window, on a session of its own (it revokes that family).
      const spare = (await s.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: 'root', password: pw } })).body;
      assertOk(await s.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: spare.refresh_token } }));
      s.clock.advance((s.deps.settings.refreshReuseGrace + 1) * 1000);
      errors.push(await s.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: spare.refresh_token } }));
      const svc = await serviceAccess(s, rotated.access_token, ['expose:*']);
      errors.push(await s.call('GET', '/v1/me', { token: `${svc.accessToken}x` }));
      const enr = (await s.call('POST', '/v1/nodes/enrollment-tokens', { token: rotated.access_token, body: { name: 'relay1' } })).body;
      const node = await s.call('POST', '/v1/nodes/enroll', { body: { token: enr.token, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', address: 'r:22' } });
      errors.push(await s.call('POST', '/v1/nodes/enroll', { body: { token: enr.token, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', address: 'r:22' } }));
      errors.push(await s.call('GET', '/v1/nodes/self/revocations?after=x', { token: node.body.node_token }));
      await s.call('POST', '/v1/nodes/self/heartbeat', {
        token: node.body.node_token,
        body: { version: 't', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [] },
      });
      await putExposure(s, svc.accessToken, 'leaky');
      const lease = await issueLease(s, svc.accessToken, { kind: 'expose', exposure: 'leaky' });
      errors.push(await s.call('GET', '/v1/me', { token: lease.token }));
      await s.call('POST', '/v1/nodes/self/events', {
        token: node.body.node_token,
        body: { events: [{ type: 'auth_fail', at: s.clock.now().toISOString(), lease_id: lease.lease.id, reason: 'lease revoked' }] },
      });
      const d = ed25519Seed((await s.deps.keys.signing('ssh-ca')).privateKey).toString('base64url');
      const secrets = [
        code, pw, session.access_token, session.refresh_token, rotated.access_token, rotated.refresh_token,
        svc.serviceToken, svc.accessToken, enr.token, node.body.node_token, lease.token, lease.certificate.split(' ')[1], d,
      ];
      for (const e of errors) {
        assert.ok(e.status >= 400, `expected an error, got ${e.status}`);
        assertNoSecrets(e.body, secrets, `error body ${e.body.code}`);
      }
      const audit = await s.call('GET', '/v1/audit?limit=1000', { token: rotated.access_token });
      assert.ok(audit.body.events.length >= 10);
      assertNoSecrets(audit.body, secrets, 'audit log');
    } finally {
      await fresh.close();
    }
    // The same app with its database gone: /healthz says so.
    const down = await fresh.call('GET', '/healthz');
    assert.equal(down.status, 503);
    assert.equal(down.body.status, 'unavailable');
  });
});
