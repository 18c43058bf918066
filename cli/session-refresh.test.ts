/**
 * Two tunnel processes on one login (tunnel expose and tunnel open side by side, or any command
 * run while one of them runs): once one has refreshed the tokens, the other's refresh token is
 * spent, and presenting it after the control plane's reuse grace ends the whole session. A
 * process about to refresh takes the stored, newer tokens of its own session instead; those of
 * another login (tunnel login run again) are left alone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { MeSchema } from '../protocol/api-types.js';
import { Session } from './session.js';
import { readCredentials, writeCredentials } from './settings.js';
import { testContext } from './testing/test-context.js';

const SERVER = 'https://control.test';
const jwt = (claims: Record<string, unknown>) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
const json = { headers: { 'content-type': 'application/json' } };
const me = JSON.stringify({ id: 'usr_1', name: 'bob', role: 'member' });

function setup() {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const ctx = testContext({ dispatcher: agent });
  const at1 = jwt({ sid: 'fam_1', jti: 'at1' });
  writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: at1, access_expires_at: Date.now() + 10_000, refresh_token: 'rt1' });
  const session = Session.load(ctx, undefined);
  return { agent, pool: agent.get(SERVER), ctx, session, at1 };
}

describe('a refresh after another process refreshed the same login', () => {
  it('takes the stored access token of the same session when it is still valid (no refresh)', async () => {
    const { pool, ctx, session } = setup();
    const at2 = jwt({ sid: 'fam_1', jti: 'at2' });
    writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: at2, access_expires_at: Date.now() + 600_000, refresh_token: 'rt2' });
    pool.intercept({ path: '/v1/me', method: 'GET', headers: { authorization: `Bearer ${at2}` } }).reply(200, me, json);
    assert.equal((await session.call('GET', '/v1/me', MeSchema)).name, 'bob');
    assert.equal(session.refreshToken, 'rt2');
  });

  it('refreshes with the stored refresh token of the same session, not its spent one', async () => {
    const { pool, ctx, session } = setup();
    writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: jwt({ sid: 'fam_1', jti: 'at2' }), access_expires_at: Date.now() + 20_000, refresh_token: 'rt2' });
    const at3 = jwt({ sid: 'fam_1', jti: 'at3' });
    let presented: unknown;
    pool.intercept({ path: '/v1/auth/token', method: 'POST' }).reply((req) => {
      presented = (JSON.parse(String(req.body)) as { refresh_token?: string }).refresh_token;
      return { statusCode: 200, data: JSON.stringify({ access_token: at3, token_type: 'Bearer', expires_in: 600, refresh_token: 'rt3' }), responseOptions: json };
    });
    pool.intercept({ path: '/v1/me', method: 'GET', headers: { authorization: `Bearer ${at3}` } }).reply(200, me, json);
    assert.equal((await session.call('GET', '/v1/me', MeSchema)).name, 'bob');
    assert.equal(presented, 'rt2');
    assert.equal(session.refreshToken, 'rt3');
  });

  it('keeps its own tokens when the stored ones are another login\'s (tunnel login ran again)', async () => {
    const { pool, ctx, session } = setup();
    writeCredentials(ctx, { server: SERVER, user: 'alice', access_token: jwt({ sid: 'fam_2', jti: 'atx' }), access_expires_at: Date.now() + 600_000, refresh_token: 'rtx' });
    const at2 = jwt({ sid: 'fam_1', jti: 'at2' });
    let presented: unknown;
    pool.intercept({ path: '/v1/auth/token', method: 'POST' }).reply((req) => {
      presented = (JSON.parse(String(req.body)) as { refresh_token?: string }).refresh_token;
      return { statusCode: 200, data: JSON.stringify({ access_token: at2, token_type: 'Bearer', expires_in: 600, refresh_token: 'rt2' }), responseOptions: json };
    });
    pool.intercept({ path: '/v1/me', method: 'GET', headers: { authorization: `Bearer ${at2}` } }).reply(200, me, json);
    assert.equal((await session.call('GET', '/v1/me', MeSchema)).name, 'bob');
    assert.equal(presented, 'rt1');
    // Its refreshed tokens are its own: the newer login stays stored for the next command.
    assert.equal(readCredentials(ctx)?.user, 'alice');
    assert.equal(readCredentials(ctx)?.refresh_token, 'rtx');
  });

  it('stores its refreshed tokens over its own session\'s', async () => {
    const { pool, ctx, session } = setup();
    writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: jwt({ sid: 'fam_1', jti: 'at1' }), access_expires_at: Date.now() + 10_000, refresh_token: 'rt1' });
    const at2 = jwt({ sid: 'fam_1', jti: 'at2' });
    pool.intercept({ path: '/v1/auth/token', method: 'POST' }).reply(200, JSON.stringify({ access_token: at2, token_type: 'Bearer', expires_in: 600, refresh_token: 'rt2' }), json);
    pool.intercept({ path: '/v1/me', method: 'GET', headers: { authorization: `Bearer ${at2}` } }).reply(200, me, json);
    assert.equal((await session.call('GET', '/v1/me', MeSchema)).name, 'bob');
    assert.equal(readCredentials(ctx)?.refresh_token, 'rt2');
  });
});
