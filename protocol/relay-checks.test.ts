/**
 * The relay reads the control plane's answers and lease tokens through plain checks
 * (protocol/check.ts), not zod (issue 11, idle relay RSS); the zod schemas stay the definitions
 * the control plane documents and validates with. Each check must accept exactly what its schema
 * accepts and read the same value: valid bodies, every field removed or replaced by hostile
 * values, unknown and `__proto__` keys, arrays at and past their bounds, and seeded random JSON.
 * Inputs are what JSON.parse can make (own properties only, no other prototypes), plus NaN and
 * Infinity: the relay checks only parsed JSON.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { z } from 'zod';
import { checkJwks } from './jwks-check.js';
import { JwksSchema } from './jwks.js';
import { checkLeaseClaims, LEASE_TIME_MAX } from './lease-claims-check.js';
import { LeaseClaimsSchema } from './lease-claims.js';
import { checkEventBatchResult, checkNodeEnrollResponse, checkNodeHeartbeatResponse, checkRevocationFeed, FEED_PAGE_MAX_ENTRIES } from './node-api-check.js';
import { EventBatchResultSchema, NodeEnrollResponseSchema, NodeHeartbeatResponseSchema, RevocationFeedSchema } from './node-api.js';
import { checkProblem } from './problem.js';
import { ProblemSchema } from './problem-schema.js';

const HEX32 = 'a'.repeat(16) + '0123456789abcdef';
const X43 = 'A'.repeat(42) + '_';
const base = {
  iss: 'https://control.test',
  sub: 'usr_1',
  aud: 'tunnel-node:node_1',
  jti: `lse_${HEX32}`,
  iat: 1_700_000_000,
  nbf: 1_700_000_000,
  exp: 1_700_003_600,
  ssh_key: `SHA256:${'b'.repeat(43)}`,
  name: 'alice',
};

const HOSTILE: unknown[] = [
  null,
  true,
  false,
  0,
  -0,
  1,
  -1,
  1.5,
  65535,
  65536,
  2 ** 31,
  2 ** 53 - 1,
  2 ** 53,
  -(2 ** 53),
  1e308,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  '',
  'x',
  '1',
  'off',
  'sig',
  'expose',
  'egress',
  'OKP',
  `lse_${HEX32}`,
  `lse_${HEX32.toUpperCase()}`,
  'a'.repeat(63),
  'a'.repeat(64),
  'a'.repeat(65),
  'a'.repeat(128),
  'a'.repeat(129),
  'a'.repeat(253),
  'a'.repeat(254),
  'a'.repeat(2049),
  X43,
  `${X43}=`,
  'relay-1',
  '-relay',
  'host.example',
  '::1',
  'a\u0000b',
  '\ud800',
  '\n',
  'SHA256:' + 'b'.repeat(43) + '\n',
  [],
  [1],
  [{}],
  {},
  { a: 1 },
  JSON.parse('{"__proto__": {"polluted": 1}}'),
];

/** Every path to a value inside `v` (the root included). */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

/** A deep copy of `v` with `f` applied at `path` (f returns the new value, or `DELETE`). */
const DELETE = Symbol('delete');
function withAt(v: unknown, path: (string | number)[], f: (old: unknown) => unknown): unknown {
  if (path.length === 0) return f(v);
  const copy = (Array.isArray(v) ? [...(v as unknown[])] : { ...(v as object) }) as Record<string | number, unknown>;
  const [head, ...rest] = path;
  const next = withAt(copy[head!], rest, f);
  if (next === DELETE) {
    if (Array.isArray(copy)) copy.splice(head as number, 1);
    else delete copy[head!];
  } else copy[head!] = next;
  return copy;
}

/** Mutations of a valid value: each node removed, replaced, given extra keys, arrays resized. */
function* mutations(valid: unknown): Generator<unknown> {
  for (const p of paths(valid)) {
    if (p.length > 0) yield withAt(valid, p, () => DELETE);
    for (const h of HOSTILE) yield withAt(valid, p, () => h);
    yield withAt(valid, p, (old) => (typeof old === 'object' && old !== null && !Array.isArray(old) ? { ...old, extra: 1 } : old));
    yield withAt(valid, p, (old) => (typeof old === 'object' && old !== null && !Array.isArray(old) ? { ...old, ...JSON.parse('{"__proto__": 1}') } : old));
    yield withAt(valid, p, (old) =>
      typeof old === 'object' && old !== null && !Array.isArray(old) ? JSON.parse(JSON.stringify(old).replace(/^\{/, '{"__proto__":{"x":1},')) : old,
    );
    for (const n of [0, 1, 31, 32, 33, 63, 64, 65]) {
      yield withAt(valid, p, (old) => (Array.isArray(old) && old.length > 0 ? Array.from({ length: n }, () => old[0]) : old));
    }
  }
}

/** Seeded random JSON-ish values (with the keys and values the schemas look at, so some pass). */
function randomValues(seed: number, count: number, keys: string[], samples: unknown[]): unknown[] {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const value = (depth: number): unknown => {
    const r = rnd();
    if (depth > 3 || r < 0.4) return pick([...HOSTILE, ...samples]);
    if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
    const o: Record<string, unknown> = {};
    // Own properties, `__proto__` included, as JSON.parse makes them (never a prototype).
    for (let i = Math.floor(rnd() * 12); i > 0; i--) Object.defineProperty(o, pick(keys), { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
    return o;
  };
  return Array.from({ length: count }, () => value(0));
}

/** Leaf values found in the valid bodies, to mix into random ones. */
function leaves(v: unknown): unknown[] {
  return paths(v)
    .map((p) => p.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], v))
    .filter((x) => typeof x !== 'object' || x === null);
}

function agree<T>(name: string, schema: z.ZodType<T>, check: (v: unknown) => T | undefined, valid: unknown[]): void {
  it(`${name}: the plain check accepts exactly what the schema accepts, and reads the same value`, () => {
    const keys = [...new Set(valid.flatMap((v) => paths(v).flatMap((p) => p.filter((k): k is string => typeof k === 'string'))))];
    const inputs = [
      ...valid,
      ...valid.flatMap((v) => [...mutations(v)]),
      ...randomValues(0x5eed, 3000, [...keys, 'extra', '__proto__'], valid.flatMap(leaves)),
      ...HOSTILE,
    ];
    let accepted = 0;
    for (const input of inputs) {
      const z = schema.safeParse(input);
      const c = check(input);
      assert.equal(c !== undefined, z.success, `${name}: zod ${z.success ? 'accepts' : 'refuses'} ${JSON.stringify(input)}`);
      if (z.success) {
        accepted++;
        assert.deepStrictEqual(c, z.data, `${name}: read differently: ${JSON.stringify(input)}`);
      }
    }
    for (const v of valid) assert.notEqual(check(v), undefined, `${name}: a valid body is refused: ${JSON.stringify(v)}`);
    assert.ok(inputs.length - accepted > inputs.length / 2, `${name}: most inputs are refused (${accepted} of ${inputs.length} accepted)`);
  });
}

describe('the relay reads without zod what the schemas define (protocol/check.ts)', () => {
  agree('LeaseClaimsSchema', LeaseClaimsSchema, checkLeaseClaims, [
    { ...base, kind: 'expose', exposure: 'web', port: 22 },
    { ...base, kind: 'open', exposure: 'web-1' },
    { ...base, kind: 'open', exposure: 'web-1', iat: 0, nbf: 0, exp: LEASE_TIME_MAX },
    {
      ...base,
      kind: 'egress',
      targets: [
        { host: 'db.internal', port: 5432 },
        { host: '10.0.0.1', port: 1 },
      ],
    },
  ]);
  agree('JwksSchema', JwksSchema, checkJwks, [
    {
      keys: [
        { kty: 'OKP', crv: 'Ed25519', x: X43, kid: 'lease-1', use: 'sig', alg: 'EdDSA' },
        { kty: 'OKP', crv: 'Ed25519', x: X43, kid: 'ca-1', use: 'ssh-ca', alg: 'EdDSA', extra: 'dropped' },
      ],
    },
    { keys: [] },
  ]);
  agree('NodeEnrollResponseSchema', NodeEnrollResponseSchema, checkNodeEnrollResponse, [
    { node_id: 'node_1', name: 'relay-1', node_token: 'nt_abc', issuer: 'https://control.test' },
  ]);
  agree('NodeHeartbeatResponseSchema', NodeHeartbeatResponseSchema, checkNodeHeartbeatResponse, [{ server_time: '2026-12-02T00:00:00Z' }]);
  agree('RevocationFeedSchema', RevocationFeedSchema, checkRevocationFeed, [
    { cursor: '42', revocations: [{ lease_id: `lse_${HEX32}`, exp: 1_700_000_000 }] },
    { cursor: '', revocations: [] },
    { cursor: 'c'.repeat(128), revocations: [{ lease_id: `lse_${HEX32}`, exp: LEASE_TIME_MAX }] },
  ]);
  it('RevocationFeedSchema: a revocation expiring past LEASE_TIME_MAX (never pruned), a cursor over 128 characters or more than FEED_PAGE_MAX_ENTRIES entries is refused', () => {
    const full = { cursor: '9', revocations: Array.from({ length: FEED_PAGE_MAX_ENTRIES }, () => ({ lease_id: `lse_${HEX32}`, exp: 1 })) };
    assert.deepEqual(checkRevocationFeed(full), full);
    assert.equal(RevocationFeedSchema.safeParse(full).success, true);
    for (const bad of [
      { cursor: '1', revocations: [{ lease_id: `lse_${HEX32}`, exp: LEASE_TIME_MAX + 1 }] },
      { cursor: '1', revocations: [{ lease_id: `lse_${HEX32}`, exp: -1 }] },
      { cursor: 'c'.repeat(129), revocations: [] },
      { cursor: '9', revocations: Array.from({ length: FEED_PAGE_MAX_ENTRIES + 1 }, () => ({ lease_id: `lse_${HEX32}`, exp: 1 })) },
    ]) {
      assert.equal(checkRevocationFeed(bad), undefined, JSON.stringify(bad).slice(0, 80));
      assert.equal(RevocationFeedSchema.safeParse(bad).success, false);
    }
  });
  agree('EventBatchResultSchema', EventBatchResultSchema, checkEventBatchResult, [
    { accepted: 999, rejected: [{ index: 17, code: 'VALIDATION_FAILED', field: 'reason' }] },
    { accepted: 0, rejected: [{ index: 0, code: 'UNKNOWN_FIELD' }, { index: 1, code: 'VALIDATION_FAILED', field: 'type' }] },
    { accepted: 3, rejected: [] },
  ]);
  agree('ProblemSchema', ProblemSchema, checkProblem, [
    { type: 'about:blank', title: 'Not Found', status: 404, code: 'NOT_FOUND', request_id: 'req_1' },
    { type: 'about:blank', title: 'Bad', status: 400, code: 'INVALID_GRANT', request_id: 'req_2', detail: 'why', error: 'invalid_grant' },
  ]);
});
