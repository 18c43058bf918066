/**
 * A stranger's made-up credentials (a relay's node credential, a refresh token, a device code)
 * can only be told wrong by a database lookup: each source may miss a few times a minute, then
 * it is refused before any lookup (http/miss-throttle.ts). The proof that the refusal asks the
 * database nothing: it still answers 429 once the database is closed, where another source's
 * lookup fails.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GRANT_DEVICE_CODE } from '../../protocol/api-types.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { MissThrottle } from './miss-throttle.js';
import { AppError } from '../lib/errors.js';

const LIMIT = 3;
// Two proxies: the load balancer (the socket's peer) and 10.9.9.9, which saw the client.
const from = (ip: string) => ({ 'x-forwarded-for': `${ip}, 10.9.9.9` });
const FAKE_NODE = 'tnl_node_' + 'A'.repeat(43);
const FAKE_REFRESH = 'tnl_rt_' + 'B'.repeat(43);
const FAKE_DEVICE = 'tnl_dc_' + 'C'.repeat(43);

describe('MissThrottle', () => {
  it('refuses a source after `limit` misses in its window, until the window is over; other sources are counted apart', () => {
    const m = new MissThrottle(2, 60_000);
    const t0 = new Date(1_000_000);
    m.check('a', t0);
    m.miss('a', t0);
    m.miss('a', t0);
    assert.throws(() => m.check('a', new Date(t0.getTime() + 59_000)), (e: unknown) => e instanceof AppError && e.code === 'RATE_LIMITED' && e.headers?.['retry-after'] === '1');
    m.check('b', t0);
    m.check('a', new Date(t0.getTime() + 60_000));
    m.miss('a', new Date(t0.getTime() + 60_000));
    m.check('a', new Date(t0.getTime() + 60_000));
  });

  it('remembers at most maxSources sources, forgetting the oldest', () => {
    const m = new MissThrottle(1, 60_000, 100);
    const t0 = new Date(1_000_000);
    for (let i = 0; i < 10_000; i++) m.miss(`198.51.100.${i}`, t0);
    assert.ok(m.size <= 100, `${m.size}`);
    assert.throws(() => m.check('198.51.100.9999', t0));
  });
});

describe('unknown credentials per source', () => {
  let t: TestApp;
  let node: TestNode;
  let refreshToken: string;
  before(async () => {
    t = await createTestApp({ settings: { credentialMissLimit: LIMIT, trustProxy: 2 } });
    const admin = await t.user(uniq('admin'), 'admin', 'a long enough password');
    node = await enrollNode(t, await tokenFor(t, admin));
    const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: admin.name, password: 'a long enough password' } });
    assertOk(login);
    refreshToken = login.body.refresh_token;
  });
  after(() => t.close().catch(() => undefined));

  const feed = (token: string, ip: string) => t.call('GET', '/v1/nodes/self/revocations', { token, headers: from(ip) });
  const grant = (body: Record<string, unknown>, ip: string) => t.call('POST', '/v1/auth/token', { body, headers: from(ip) });

  it('a node credential: 401 for the first misses, then 429 before any lookup, even for a good credential; other sources unaffected', async () => {
    for (let i = 0; i < LIMIT; i++) assertProblem(await feed(FAKE_NODE, '192.0.2.1'), 401, 'TOKEN_INVALID');
    const res = await feed(FAKE_NODE, '192.0.2.1');
    assertProblem(res, 429, 'RATE_LIMITED');
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    assertProblem(await feed(node.token, '192.0.2.1'), 429, 'RATE_LIMITED');
    assertOk(await feed(node.token, '192.0.2.2'));
    assertProblem(await feed(FAKE_NODE, '192.0.2.2'), 401, 'TOKEN_INVALID');
    t.clock.advance(60_000);
    assertOk(await feed(node.token, '192.0.2.1'));
  });

  it('a refresh token and a device code: invalid_grant for the first misses, then 429', async () => {
    for (let i = 0; i < LIMIT; i++) assertProblem(await grant({ grant_type: 'refresh_token', refresh_token: FAKE_REFRESH }, '192.0.2.3'), 400, 'INVALID_GRANT');
    assertProblem(await grant({ grant_type: 'refresh_token', refresh_token: FAKE_REFRESH }, '192.0.2.3'), 429, 'RATE_LIMITED');
    assertProblem(await grant({ grant_type: GRANT_DEVICE_CODE, device_code: FAKE_DEVICE }, '192.0.2.3'), 429, 'RATE_LIMITED');
    for (let i = 0; i < LIMIT; i++) assertProblem(await grant({ grant_type: GRANT_DEVICE_CODE, device_code: FAKE_DEVICE }, '192.0.2.4'), 400, 'INVALID_GRANT');
    assertProblem(await grant({ grant_type: GRANT_DEVICE_CODE, device_code: FAKE_DEVICE }, '192.0.2.4'), 429, 'RATE_LIMITED');
    assertOk(await grant({ grant_type: 'refresh_token', refresh_token: refreshToken }, '192.0.2.5'));
  });

  it('the refusal asks the database nothing: with it closed, a throttled source still gets 429 and another source does not', async () => {
    for (let i = 0; i < LIMIT; i++) assertProblem(await feed(FAKE_NODE, '192.0.2.9'), 401, 'TOKEN_INVALID');
    await t.opened.close();
    assertProblem(await feed(FAKE_NODE, '192.0.2.9'), 429, 'RATE_LIMITED');
    assertProblem(await grant({ grant_type: 'refresh_token', refresh_token: FAKE_REFRESH }, '192.0.2.3'), 429, 'RATE_LIMITED');
    const other = await feed(FAKE_NODE, '192.0.2.10');
    assert.ok(other.status >= 500, `a lookup on a closed database fails (${other.status})`);
  });
});
