/**
 * The authorization matrix (issue 9, must-show 1): every operation of /openapi.json × every kind
 * of caller, through the real HTTP server. Each operation names its policy actions
 * (`x-tunnel-actions`); the expected answer of every cell comes from the policy itself
 * (`authorize()` in services/authz.ts) for the principal and resource of that cell, and the test
 * checks that the server gives exactly that: the denial's status and code, or success.
 * It fails when an operation has no policy action, names an action the policy does not know, or
 * has no request below.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { httpStatusFor } from '../../protocol/error-codes.js';
import { mintAccessToken } from '../auth/access-tokens.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { serveTestApp, type ServedApp } from '../testing/serve.js';
import { assertProblem, type CallResult } from '../testing/problem.js';
import { enrollNode, exposeOn, heartbeat, issueLease, newClientKey, uniq, type TestNode } from '../testing/fixtures.js';
import {
  ANONYMOUS,
  authnOf,
  authorize,
  isAction,
  parseScopes,
  type Action,
  type Decision,
  type ConnectionResource,
  type Principal,
  type UserPrincipal,
} from '../services/authz.js';

const PASSWORD = 'matrix password 0123';

type Kind =
  | 'admin'
  | 'owner'
  | 'other member'
  | 'member in ACL'
  | 'admin token in scope'
  | 'admin token out of scope'
  | 'owner token in scope'
  | 'owner token out of scope'
  | 'node'
  | 'lease token'
  | 'anonymous';
const KINDS: Kind[] = [
  'admin',
  'owner',
  'other member',
  'member in ACL',
  'admin token in scope',
  'admin token out of scope',
  'owner token in scope',
  'owner token out of scope',
  'node',
  'lease token',
  'anonymous',
];

interface Caller {
  principal: Principal | 'lease token';
  token?: string;
}

/** The resources every cell works on, fresh for each cell of an operation that changes state. */
interface World {
  exposure: string;
  target: string;
  node: TestNode;
  users: Record<'admin' | 'owner' | 'other' | 'inAcl' | 'victim', { id: string; name: string }>;
  callers: Record<Kind, Caller>;
  /** The owner's lease issued interactively, and one issued through the owner's in-scope token. */
  lease: { id: string; userId: string; serviceTokenId: string | null };
  scopedLease: { id: string; userId: string; serviceTokenId: string | null };
  /** A service token of the owner that no caller uses (to revoke and change). */
  spareToken: string;
  enrollmentToken: string;
  /** Connections the relay reported: under the owner's expose lease, the ACL member's open lease and an admin's egress lease. */
  connections: { sessionId: string; resource: ConnectionResource }[];
}

interface Request {
  path: string;
  body?: unknown;
}
interface Case {
  /** What the request is, for the test name. */
  label?: string;
  request(w: World): Request;
  /** The policy action and resource this request is (one of the operation's x-tunnel-actions). */
  action: Action;
  resource?(w: World, p: Principal): unknown;
  /** Status when allowed (default 200). */
  ok?: number;
  /** Allowed means "got past authorization" and then this problem (e.g. a wrong setup code). */
  okProblem?: { status: number; code: 'INVALID_CREDENTIALS' | 'NOT_FOUND' };
  /** For a listing: the rows of this world it must show are exactly those the policy lets the caller see. */
  rows?: {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
    ids(body: any): string[];
    expected(w: World, p: Principal): string[];
  };
}

const userOf = (p: Principal): string => (p.kind === 'user' ? p.userId : '');
const exposureRes = (w: World) => ({ name: w.exposure, ownerId: w.users.owner.id, allow: [w.users.inAcl.name] });
const keyLine = () => newClientKey().line;

/** One entry per operation of /openapi.json: the requests that exercise its actions. */
const CASES: Record<string, Case[]> = {
  'GET /.well-known/jwks.json': [{ request: () => ({ path: '/.well-known/jwks.json' }), action: 'public.read' }],
  'GET /.well-known/oauth-authorization-server': [{ request: () => ({ path: '/.well-known/oauth-authorization-server' }), action: 'public.read' }],
  'POST /v1/auth/device': [{ request: () => ({ path: '/v1/auth/device', body: { client_name: 'matrix' } }), action: 'auth.device.start' }],
  'POST /v1/auth/token': [
    {
      request: (w) => ({ path: '/v1/auth/token', body: { grant_type: 'password', username: w.users.owner.name, password: PASSWORD } }),
      action: 'auth.token',
    },
  ],
  'POST /v1/setup': [
    {
      request: () => ({ path: '/v1/setup', body: { setup_code: 'setup_wrong', name: uniq('root'), password: PASSWORD } }),
      action: 'setup.admin',
      okProblem: { status: 401, code: 'INVALID_CREDENTIALS' },
    },
  ],
  'GET /v1/me': [{ request: () => ({ path: '/v1/me' }), action: 'self.read' }],
  'POST /v1/auth/logout': [{ request: () => ({ path: '/v1/auth/logout', body: {} }), action: 'self.logout', ok: 204 }],
  'POST /v1/users': [{ request: () => ({ path: '/v1/users', body: { name: uniq('u'), role: 'member' } }), action: 'user.create', ok: 201 }],
  'GET /v1/users': [{ request: () => ({ path: '/v1/users' }), action: 'user.list' }],
  'DELETE /v1/users/{name}': [
    { request: (w) => ({ path: `/v1/users/${w.users.victim.name}` }), action: 'user.disable', resource: (w) => ({ name: w.users.victim.name }) },
  ],
  'PATCH /v1/users/{name}': [
    {
      request: (w) => ({ path: `/v1/users/${w.users.victim.name}`, body: { role: 'admin' } }),
      action: 'user.update',
      resource: (w) => ({ name: w.users.victim.name }),
    },
  ],
  'POST /v1/service-tokens': [
    {
      request: () => ({ path: '/v1/service-tokens', body: { name: uniq('st'), scopes: ['open:*'] } }),
      action: 'service_token.create',
      resource: (_w, p) => ({ userId: userOf(p) }),
      ok: 201,
    },
  ],
  'GET /v1/service-tokens': [{ request: () => ({ path: '/v1/service-tokens' }), action: 'service_token.list' }],
  'PATCH /v1/service-tokens/{id}': [
    {
      request: (w) => ({ path: `/v1/service-tokens/${w.spareToken}`, body: { scopes: ['open:*'] } }),
      action: 'service_token.update',
      resource: (w) => ({ userId: w.users.owner.id }),
    },
  ],
  'DELETE /v1/service-tokens/{id}': [
    {
      request: (w) => ({ path: `/v1/service-tokens/${w.spareToken}` }),
      action: 'service_token.revoke',
      resource: (w) => ({ userId: w.users.owner.id }),
    },
  ],
  'POST /v1/nodes/enrollment-tokens': [
    { request: () => ({ path: '/v1/nodes/enrollment-tokens', body: { name: uniq('node') } }), action: 'node.enrollment_token.create', ok: 201 },
  ],
  'POST /v1/nodes/enroll': [
    {
      request: (w) => ({ path: '/v1/nodes/enroll', body: { token: w.enrollmentToken, host_key: keyLine(), address: 'relay.test:2222' } }),
      action: 'node.enroll',
      ok: 201,
    },
  ],
  'GET /v1/nodes': [{ request: () => ({ path: '/v1/nodes' }), action: 'node.list' }],
  // Allowed callers reach the service: a name no relay has is 404 (node-removal.test removes real ones).
  'DELETE /v1/nodes/{name}': [{ request: () => ({ path: `/v1/nodes/${uniq('gone')}` }), action: 'node.delete', okProblem: { status: 404, code: 'NOT_FOUND' } }],
  'POST /v1/nodes/self/heartbeat': [
    {
      request: (w) => ({
        path: '/v1/nodes/self/heartbeat',
        body: { version: 't', native_crypto: true, egress_driver: 'off', connections: 0, exposures: [{ name: w.exposure, port: 22 }] },
      }),
      action: 'node.heartbeat',
    },
  ],
  'GET /v1/nodes/self/revocations': [{ request: () => ({ path: '/v1/nodes/self/revocations' }), action: 'node.revocations' }],
  'POST /v1/nodes/self/events': [
    {
      request: (w) => ({ path: '/v1/nodes/self/events', body: { events: [{ type: 'conn_open', at: new Date().toISOString(), lease_id: w.lease.id }] } }),
      action: 'node.events',
      ok: 202,
    },
  ],
  'PUT /v1/exposures/{name}': [
    {
      label: 'change the allow list',
      request: (w) => ({ path: `/v1/exposures/${w.exposure}`, body: { allow: [] } }),
      action: 'exposure.update',
      resource: exposureRes,
    },
    {
      label: 'create',
      request: (w) => ({ path: `/v1/exposures/${w.exposure}-new`, body: { allow: [] } }),
      action: 'exposure.create',
      resource: (w) => ({ name: `${w.exposure}-new`, ownerId: null, allow: [] }),
      ok: 201,
    },
  ],
  'GET /v1/exposures/{name}': [{ request: (w) => ({ path: `/v1/exposures/${w.exposure}` }), action: 'exposure.read', resource: exposureRes }],
  'DELETE /v1/exposures/{name}': [
    { request: (w) => ({ path: `/v1/exposures/${w.exposure}` }), action: 'exposure.delete', resource: exposureRes, ok: 204 },
  ],
  'GET /v1/exposures': [{ request: () => ({ path: '/v1/exposures' }), action: 'exposure.list' }],
  'PUT /v1/egress-targets/{name}': [
    {
      request: (w) => ({ path: `/v1/egress-targets/${w.target}`, body: { node: w.node.name, host: '10.0.0.5', port: 5432, allow: [] } }),
      action: 'egress_target.put',
    },
  ],
  'DELETE /v1/egress-targets/{name}': [{ request: (w) => ({ path: `/v1/egress-targets/${w.target}` }), action: 'egress_target.delete', ok: 204 }],
  'GET /v1/egress-targets': [{ request: () => ({ path: '/v1/egress-targets' }), action: 'egress_target.list' }],
  'POST /v1/leases': [
    {
      label: 'open',
      request: (w) => ({ path: '/v1/leases', body: { kind: 'open', exposure: w.exposure, public_key: keyLine() } }),
      action: 'lease.issue.open',
      resource: exposureRes,
      ok: 201,
    },
    {
      label: 'expose',
      request: (w) => ({ path: '/v1/leases', body: { kind: 'expose', exposure: w.exposure, public_key: keyLine() } }),
      action: 'lease.issue.expose',
      resource: exposureRes,
      ok: 201,
    },
    {
      label: 'egress',
      request: (w) => ({ path: '/v1/leases', body: { kind: 'egress', targets: [w.target], public_key: keyLine() } }),
      action: 'lease.issue.egress',
      resource: (w) => ({ name: w.target, allow: [w.users.owner.name] }),
      ok: 201,
    },
  ],
  'GET /v1/leases': [
    { label: 'own', request: () => ({ path: '/v1/leases' }), action: 'lease.list' },
    { label: 'all=true', request: () => ({ path: '/v1/leases?all=true' }), action: 'lease.list_all' },
  ],
  'GET /v1/leases/{id}': [
    { label: 'interactive lease', request: (w) => ({ path: `/v1/leases/${w.lease.id}` }), action: 'lease.read', resource: (w) => w.lease },
    {
      label: 'lease of the owner\'s token',
      request: (w) => ({ path: `/v1/leases/${w.scopedLease.id}` }),
      action: 'lease.read',
      resource: (w) => w.scopedLease,
    },
  ],
  'DELETE /v1/leases/{id}': [
    { label: 'interactive lease', request: (w) => ({ path: `/v1/leases/${w.lease.id}` }), action: 'lease.revoke', resource: (w) => w.lease },
    {
      label: 'lease of the owner\'s token',
      request: (w) => ({ path: `/v1/leases/${w.scopedLease.id}` }),
      action: 'lease.revoke',
      resource: (w) => w.scopedLease,
    },
  ],
  'GET /v1/connections': [
    {
      request: () => ({ path: '/v1/connections?state=all&limit=1000' }),
      action: 'connection.list',
      rows: {
        ids: (body: { connections: { session_id: string }[] }) => body.connections.map((c) => c.session_id),
        expected: (w, p) => w.connections.filter((c) => authorize(p, 'connection.read', c.resource).allow).map((c) => c.sessionId),
      },
    },
  ],
  'GET /v1/audit': [{ request: () => ({ path: '/v1/audit' }), action: 'audit.read' }],
};

/** The app, with `call` going over real HTTP. */
let t: TestApp;
let served: ServedApp;
let admin: { id: string; name: string; token: string };
let doc: { paths: Record<string, Record<string, { 'x-tunnel-actions'?: unknown }>> };

before(async () => {
  const app = await createTestApp({ settings: { authRateLimit: 10_000, leaseRateLimit: 10_000 } });
  served = await serveTestApp(app);
  t = { ...app, call: served.call };
  admin = await t.user(uniq('admin'), 'admin');
  doc = (await t.call('GET', '/openapi.json')).body;
});
after(async () => {
  await served?.close();
  await t?.close();
});

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, actions: op['x-tunnel-actions'] })),
  );

/** A fresh world: users, an exposure with one user on its allow list, a relay holding it, an egress target, leases and tokens. */
async function makeWorld(): Promise<World> {
  const adminToken = (await mintAccessToken(t.deps, { ...admin, role: 'admin' })).token;
  const owner = await t.user(uniq('owner'), 'member', PASSWORD);
  const other = await t.user(uniq('other'), 'member');
  const inAcl = await t.user(uniq('friend'), 'member');
  const victim = await t.user(uniq('victim'), 'member');
  const exposure = uniq('mx-');
  const target = uniq('mxt');
  const node = await enrollNode(t, adminToken);
  await heartbeat(t, node);
  const put = await t.call('PUT', `/v1/exposures/${exposure}`, { token: owner.token, body: { allow: [inAcl.name] } });
  assert.equal(put.status, 201);
  await exposeOn(t, adminToken, node, owner.token, exposure);
  await heartbeat(t, node, [{ name: exposure, port: 22 }]);
  const tg = await t.call('PUT', `/v1/egress-targets/${target}`, {
    token: adminToken,
    body: { node: node.name, host: '10.0.0.9', port: 5432, allow: [owner.name] },
  });
  assert.equal(tg.status, 200);

  const scoped = async (u: { id: string; name: string }, role: 'admin' | 'member', scopes: string[]): Promise<Caller> => {
    const res = await t.call('POST', '/v1/service-tokens', {
      token: (await mintAccessToken(t.deps, { ...u, role })).token,
      body: { name: uniq('st'), scopes },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const at = await mintAccessToken(t.deps, { ...u, role }, { id: res.body.id, scopes });
    const principal: UserPrincipal = { kind: 'user', userId: u.id, name: u.name, role, scopes: parseScopes(scopes), serviceTokenId: res.body.id };
    return { principal, token: at.token };
  };
  const inScope = [`expose:${exposure}`, `open:${exposure}`, `manage:${exposure}`, `egress:${target}`];
  const outOfScope = ['open:somewhere-else', 'egress:elsewhere'];
  const user = (u: { id: string; name: string; token: string }, role: 'admin' | 'member'): Caller => ({
    principal: { kind: 'user', userId: u.id, name: u.name, role, scopes: null, serviceTokenId: null },
    token: u.token,
  });
  const ownerIn = await scoped(owner, 'member', inScope);
  const lease = await issueLease(t, owner.token, { kind: 'expose', exposure });
  const scopedLease = await issueLease(t, ownerIn.token!, { kind: 'expose', exposure });
  const spare = await t.call('POST', '/v1/service-tokens', { token: owner.token, body: { name: uniq('spare'), scopes: ['open:*'] } });
  const aclOpen = await issueLease(t, inAcl.token, { kind: 'open', exposure });
  const adminEgress = await issueLease(t, adminToken, { kind: 'egress', targets: [target] });
  const connections = [
    { lease: lease.lease.id, resource: { leaseUserId: owner.id, exposureOwnerId: owner.id } },
    { lease: aclOpen.lease.id, resource: { leaseUserId: inAcl.id, exposureOwnerId: owner.id } },
    { lease: adminEgress.lease.id, resource: { leaseUserId: admin.id, exposureOwnerId: null } },
  ].map((c) => ({ sessionId: uniq('ssh'), ...c }));
  const reported = await t.call('POST', '/v1/nodes/self/events', {
    token: node.token,
    body: { events: connections.map((c) => ({ type: 'conn_open', at: new Date().toISOString(), lease_id: c.lease, session_id: c.sessionId })) },
  });
  assert.equal(reported.status, 202);
  const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name: uniq('node') } });
  return {
    exposure,
    target,
    node,
    users: { admin, owner, other, inAcl, victim },
    callers: {
      admin: user({ ...admin, token: adminToken }, 'admin'),
      owner: user(owner, 'member'),
      'other member': user(other, 'member'),
      'member in ACL': user(inAcl, 'member'),
      'admin token in scope': await scoped(admin, 'admin', inScope),
      'admin token out of scope': await scoped(admin, 'admin', outOfScope),
      'owner token in scope': ownerIn,
      'owner token out of scope': await scoped(owner, 'member', outOfScope),
      node: { principal: { kind: 'node', nodeId: node.id, name: node.name }, token: node.token },
      'lease token': { principal: 'lease token', token: lease.token },
      anonymous: { principal: ANONYMOUS },
    },
    lease: { id: lease.lease.id, userId: owner.id, serviceTokenId: null },
    scopedLease: { id: scopedLease.lease.id, userId: owner.id, serviceTokenId: (ownerIn.principal as UserPrincipal).serviceTokenId },
    spareToken: spare.body.id,
    enrollmentToken: enr.body.token,
    connections: connections.map(({ sessionId, resource }) => ({ sessionId, resource })),
  };
}

/** What the policy says for this cell. A lease token is no principal: only public actions take it (they ignore it). */
function expected(c: Case, w: World, caller: Caller): Decision {
  if (caller.principal === 'lease token') {
    return authnOf(c.action) === 'none' ? { allow: true } : { allow: false, code: 'TOKEN_INVALID', detail: 'a lease token is no API credential' };
  }
  const resource = c.resource?.(w, caller.principal);
  return (authorize as (p: Principal, a: Action, r?: unknown) => Decision)(caller.principal, c.action, resource);
}

function check(res: CallResult, want: Decision, c: Case, w: World, caller: Caller): void {
  if (!want.allow) {
    assertProblem(res, httpStatusFor(want.code), want.code);
  } else if (c.okProblem) {
    assertProblem(res, c.okProblem.status, c.okProblem.code);
  } else {
    assert.equal(res.status, c.ok ?? 200, `allowed by the policy, got ${res.status} ${JSON.stringify(res.body)}`);
  }
  if (want.allow && c.rows && caller.principal !== 'lease token') {
    const admin: Principal = { kind: 'user', userId: w.users.admin.id, name: w.users.admin.name, role: 'admin', scopes: null, serviceTokenId: null };
    const ofWorld = new Set(c.rows.expected(w, admin));
    const shown = c.rows.ids(res.body).filter((id) => ofWorld.has(id));
    assert.deepEqual(shown.sort(), c.rows.expected(w, caller.principal).sort(), 'the listing shows exactly the rows the policy lets this caller see');
  }
}

describe('authorization matrix (every operation x every caller, expectations from the policy)', () => {
  it('every operation of /openapi.json names known policy actions and has requests here', () => {
    const ops = operations();
    for (const op of ops) {
      assert.ok(Array.isArray(op.actions) && op.actions.length > 0, `${op.key} has no x-tunnel-actions (no policy entry)`);
      for (const a of op.actions as unknown[]) assert.ok(isAction(a), `${op.key}: "${String(a)}" is not an action of the policy`);
      assert.ok(CASES[op.key], `${op.key} has no requests in the matrix`);
      for (const c of CASES[op.key]!) assert.ok((op.actions as string[]).includes(c.action), `${op.key}: case action ${c.action} not declared`);
    }
    assert.deepEqual(Object.keys(CASES).sort(), ops.map((o) => o.key).sort());
  });

  for (const [key, cases] of Object.entries(CASES)) {
    const method = key.split(' ')[0]!;
    for (const c of cases) {
      it(`${key}${c.label ? ` (${c.label})` : ''}`, async () => {
        // Cells share a world until one changes it (an allowed request other than a read): the
        // next cell gets a fresh one, so no cell sees another's effects.
        let world: World | undefined;
        const summary: string[] = [];
        for (const kind of KINDS) {
          const w = (world ??= await makeWorld());
          const caller = w.callers[kind];
          const want = expected(c, w, caller);
          const req = c.request(w);
          const res = await t.call(method, req.path, { token: caller.token, body: req.body });
          summary.push(`${kind}: ${want.allow ? 'allow' : want.code}`);
          if (want.allow && method !== 'GET') world = undefined;
          try {
            check(res, want, c, w, caller);
          } catch (err) {
            throw new Error(`${kind} (policy: ${want.allow ? 'allow' : want.code}): ${(err as Error).message}`, { cause: err });
          }
        }
        assert.ok(summary.length === KINDS.length);
      });
    }
  }
});
