/**
 * The security matrix: every route of the OpenAPI document, with every way a caller can be
 * wrong about who it is (no token, expired, wrong audience, lease token, unknown key, member
 * as admin, service token on an admin route, user token on a node route) and every way a body
 * can be wrong (too large, not JSON, not application/json, unknown field).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LEASE_TOKEN_TYP } from '../../protocol/lease-claims.js';
import { OAUTH_PATHS } from '../http/oauth.js';
import { mintAccessToken } from '../auth/access-tokens.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { assertOk, assertProblem, type CallResult } from '../testing/problem.js';
import {
  enrollNode,
  forgeAccessToken,
  heartbeat,
  issueLease,
  newClientKey,
  putExposure,
  serviceAccess,
  uniq,
  type TestNode,
} from '../testing/fixtures.js';

type Auth = 'public' | 'user' | 'admin' | 'node';
interface RouteCase {
  auth: Auth;
  path: () => string;
  body?: () => Record<string, unknown>;
  /** It takes a `limit` query parameter (a page size). */
  pageLimit?: boolean;
}

const hex32 = 'a'.repeat(32);
const keyLine = newClientKey().line;

/** One entry per operation in /openapi.json (a test below fails when a route is missing here). */
const ROUTES: Record<string, RouteCase> = {
  'GET /.well-known/jwks.json': { auth: 'public', path: () => '/.well-known/jwks.json' },
  'GET /.well-known/oauth-authorization-server': { auth: 'public', path: () => '/.well-known/oauth-authorization-server' },
  'POST /v1/auth/device': { auth: 'public', path: () => '/v1/auth/device', body: () => ({ client_name: 'cli' }) },
  'POST /v1/auth/token': {
    auth: 'public',
    path: () => '/v1/auth/token',
    body: () => ({ grant_type: 'refresh_token', refresh_token: 'tnl_rt_unknown' }),
  },
  'POST /v1/setup': {
    auth: 'public',
    path: () => '/v1/setup',
    body: () => ({ setup_code: 'setup_wrong', name: uniq('root'), password: 'long-enough-password' }),
  },
  'GET /v1/me': { auth: 'user', path: () => '/v1/me' },
  'POST /v1/auth/logout': { auth: 'user', path: () => '/v1/auth/logout', body: () => ({}) },
  'POST /v1/users': { auth: 'admin', path: () => '/v1/users', body: () => ({ name: uniq('u'), role: 'member' }) },
  'GET /v1/users': { auth: 'admin', path: () => '/v1/users' },
  'PATCH /v1/users/{name}': { auth: 'admin', path: () => `/v1/users/${uniq('nobody')}`, body: () => ({ disabled: false }) },
  'DELETE /v1/users/{name}': { auth: 'admin', path: () => `/v1/users/${uniq('nobody')}` },
  'POST /v1/service-tokens': {
    auth: 'user',
    path: () => '/v1/service-tokens',
    body: () => ({ name: uniq('st'), scopes: ['open:*'] }),
  },
  'GET /v1/service-tokens': { auth: 'user', path: () => '/v1/service-tokens' },
  'DELETE /v1/service-tokens/{id}': { auth: 'user', path: () => `/v1/service-tokens/st_${hex32}` },
  'PATCH /v1/service-tokens/{id}': { auth: 'user', path: () => `/v1/service-tokens/st_${hex32}`, body: () => ({ scopes: ['open:*'] }) },
  'POST /v1/nodes/enrollment-tokens': {
    auth: 'admin',
    path: () => '/v1/nodes/enrollment-tokens',
    body: () => ({ name: uniq('node') }),
  },
  'POST /v1/nodes/enroll': {
    auth: 'public',
    path: () => '/v1/nodes/enroll',
    body: () => ({ token: 'tnl_enr_unknown', host_key: keyLine, address: 'relay.test:2222' }),
  },
  'GET /v1/nodes': { auth: 'user', path: () => '/v1/nodes' },
  'DELETE /v1/nodes/{name}': { auth: 'admin', path: () => `/v1/nodes/${uniq('gone')}` },
  'POST /v1/nodes/self/heartbeat': {
    auth: 'node',
    path: () => '/v1/nodes/self/heartbeat',
    body: () => ({ version: 't', native_crypto: true, egress_driver: 'off', connections: 0, exposures: [] }),
  },
  'GET /v1/nodes/self/revocations': { auth: 'node', path: () => '/v1/nodes/self/revocations' },
  'POST /v1/nodes/self/events': {
    auth: 'node',
    path: () => '/v1/nodes/self/events',
    body: () => ({ events: [{ type: 'conn_open', at: new Date().toISOString(), lease_id: `lse_${hex32}` }] }),
  },
  'PUT /v1/exposures/{name}': { auth: 'user', path: () => `/v1/exposures/${uniq('ex-')}`, body: () => ({ allow: [] }) },
  'GET /v1/exposures/{name}': { auth: 'user', path: () => `/v1/exposures/${uniq('ex-')}` },
  'DELETE /v1/exposures/{name}': { auth: 'user', path: () => `/v1/exposures/${uniq('ex-')}` },
  'GET /v1/exposures': { auth: 'user', path: () => '/v1/exposures' },
  'PUT /v1/egress-targets/{name}': {
    auth: 'admin',
    path: () => `/v1/egress-targets/${uniq('tg')}`,
    body: () => ({ node: 'no-such-node', host: '10.0.0.5', port: 5432 }),
  },
  'DELETE /v1/egress-targets/{name}': { auth: 'admin', path: () => `/v1/egress-targets/${uniq('tg')}` },
  'GET /v1/egress-targets': { auth: 'user', path: () => '/v1/egress-targets' },
  'POST /v1/leases': {
    auth: 'user',
    path: () => '/v1/leases',
    body: () => ({ kind: 'open', exposure: 'no-such-exposure', public_key: keyLine }),
  },
  'GET /v1/leases': { auth: 'user', path: () => '/v1/leases', pageLimit: true },
  'GET /v1/leases/{id}': { auth: 'user', path: () => `/v1/leases/lse_${hex32}` },
  'DELETE /v1/leases/{id}': { auth: 'user', path: () => `/v1/leases/lse_${hex32}` },
  'GET /v1/audit': { auth: 'admin', path: () => '/v1/audit', pageLimit: true },
  'GET /v1/connections': { auth: 'user', path: () => '/v1/connections', pageLimit: true },
};

let t: TestApp;
let admin: { id: string; name: string; token: string };
let member: { id: string; name: string; token: string };
let node: TestNode;
const exposure = uniq('sec-');

before(async () => {
  t = await createTestApp();
  admin = await t.user(uniq('admin'), 'admin');
  member = await t.user(uniq('member'), 'member');
  node = await enrollNode(t, admin.token);
  await putExposure(t, member.token, exposure);
});
after(() => t.close());

/** Fresh tokens for one route's checks (earlier routes moved the clock past older ones). */
async function freshTokens() {
  const mint = async (u: { id: string; name: string }, role: 'admin' | 'member') => (await mintAccessToken(t.deps, { ...u, role })).token;
  const adminToken = await mint(admin, 'admin');
  const memberToken = await mint(member, 'member');
  await heartbeat(t, node);
  const lease = await issueLease(t, memberToken, { kind: 'expose', exposure });
  const adminService = await serviceAccess(t, adminToken, ['expose:*', 'open:*']);
  return { adminToken, memberToken, leaseToken: lease.token as string, adminServiceToken: adminService.accessToken };
}

function call(method: string, rc: RouteCase, token?: string, extra: { body?: unknown; headers?: Record<string, string> } = {}) {
  return t.call(method, rc.path(), { token, body: extra.body ?? rc.body?.(), headers: extra.headers });
}

const isAuthFailure = (r: CallResult) => r.status === 401 || r.status === 403;

describe('security matrix', () => {
  it('covers every operation in /openapi.json and nothing else', async () => {
    const doc = await t.call('GET', '/openapi.json');
    const ops = Object.entries(doc.body.paths as Record<string, Record<string, unknown>>).flatMap(([p, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`),
    );
    assert.deepEqual(ops.sort(), Object.keys(ROUTES).sort());
  });

  for (const [key, rc] of Object.entries(ROUTES)) {
    const method = key.split(' ')[0]!;
    describe(key, () => {
      if (rc.auth === 'user' || rc.auth === 'admin') {
        it('refuses callers that are not who they claim', async () => {
          const tok = await freshTokens();
          assertProblem(await call(method, rc), 401, 'UNAUTHENTICATED');
          assertProblem(await call(method, rc, undefined, { headers: { authorization: `Basic ${tok.adminToken}` } }), 401, 'UNAUTHENTICATED');
          assertProblem(await call(method, rc, await forgeAccessToken(t, admin, { aud: 'https://elsewhere.test/v1' })), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, await forgeAccessToken(t, admin, { aud: node.id })), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, await forgeAccessToken(t, admin, { typ: LEASE_TOKEN_TYP })), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, tok.leaseToken), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, await forgeAccessToken(t, admin, { key: 'foreign' })), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, node.token), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, `${tok.adminToken.slice(0, -4)}AAAA`), 401, 'TOKEN_INVALID');
          if (rc.auth === 'admin') {
            assertProblem(await call(method, rc, tok.memberToken), 403, 'FORBIDDEN');
            assertProblem(await call(method, rc, tok.adminServiceToken), 403, 'SCOPE_DENIED');
          }
          // Positive control: the right caller gets past authentication.
          const ok = await call(method, rc, tok.adminToken);
          assert.ok(!isAuthFailure(ok), `admin refused: ${ok.status} ${JSON.stringify(ok.body)}`);
        });

        it('refuses an access token once its TTL has passed', async () => {
          const { adminToken } = await freshTokens();
          assert.ok(!isAuthFailure(await call(method, rc, adminToken)));
          t.clock.advance((t.deps.settings.accessTokenTtl + 1) * 1000);
          assertProblem(await call(method, rc, adminToken), 401, 'TOKEN_EXPIRED');
        });
      }

      if (rc.auth === 'node') {
        it('accepts only a node credential', async () => {
          const { adminToken } = await freshTokens();
          assertProblem(await call(method, rc), 401, 'UNAUTHENTICATED');
          assertProblem(await call(method, rc, adminToken), 401, 'TOKEN_INVALID');
          assertProblem(await call(method, rc, 'tnl_node_not-a-real-credential'), 401, 'TOKEN_INVALID');
          const ok = await call(method, rc, node.token);
          assert.ok(!isAuthFailure(ok), `node refused: ${ok.status} ${JSON.stringify(ok.body)}`);
        });
      }

      if (rc.body) {
        it('refuses bodies that are too large, not JSON, not application/json or have unknown fields', async () => {
          const { adminToken } = await freshTokens();
          const token = rc.auth === 'node' ? node.token : rc.auth === 'public' ? undefined : adminToken;
          const big = JSON.stringify({ ...rc.body!(), pad: 'x'.repeat(t.deps.settings.maxBodyBytes) });
          assertProblem(await call(method, rc, token, { body: big }), 413, 'PAYLOAD_TOO_LARGE');
          assertProblem(await call(method, rc, token, { body: '{"name": ' }), 400, 'INVALID_JSON');
          const valid = JSON.stringify(rc.body!());
          assertProblem(await call(method, rc, token, { body: valid, headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
          // The OAuth endpoints take forms (RFC 6749 §3.2): an unknown form field is refused like a JSON one.
          const form = await call(method, rc, token, { body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
          if (OAUTH_PATHS.some((p) => p === rc.path())) {
            assert.equal(form.status, 400, JSON.stringify(form.body));
            assert.ok(['UNKNOWN_FIELD', 'VALIDATION_FAILED'].includes(form.body.code), form.body.code);
            assert.equal(form.body.error, 'invalid_request');
          } else assertProblem(form, 415, 'UNSUPPORTED_MEDIA_TYPE');
          assertProblem(await call(method, rc, token, { body: { ...rc.body!(), surprise: true } }), 400, 'UNKNOWN_FIELD');
          // The detail names a few of the client's unknown names, each cut short, not all of them whole.
          const many = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`${'k'.repeat(40)}${i}`, 1]));
          const long = await call(method, rc, token, { body: { ...rc.body!(), ['x'.repeat(20_000)]: 1, ...many } });
          assertProblem(long, 400, 'UNKNOWN_FIELD');
          assert.ok(long.body.detail.length < 600, `detail of ${long.body.detail.length} characters`);
        });
      }

      // Every route, not only the list routes: a parameter it does not know is refused, not ignored
      // (a misspelt filter would otherwise answer as if no filter had been asked for).
      it('refuses unknown query parameters', async () => {
        const { adminToken } = await freshTokens();
        const token = rc.auth === 'node' ? node.token : adminToken;
        assertProblem(await t.call(method, `${rc.path()}?surprise=1`, { token, body: rc.body?.() }), 400, 'UNKNOWN_FIELD');
      });

      if (rc.pageLimit) {
        it('takes a limit only in decimal digits', async () => {
          const { adminToken: token } = await freshTokens();
          // Number() reads each of these as a valid page size (16, 100, 5, 5, 5, 5).
          for (const limit of ['0x10', '1e2', '%2B5', '%205', '5.0', '0005%20']) {
            assertProblem(await t.call(method, `${rc.path()}?limit=${limit}`, { token }), 400, 'VALIDATION_FAILED');
          }
          assertOk(await t.call(method, `${rc.path()}?limit=5`, { token }));
        });
      }
    });
  }
});
