/**
 * `tunnel exposures allow/deny` edit the allow list they read: they send it as `expect_allow`, and
 * when the control plane refuses the edit because someone changed the list meanwhile (409
 * CONFLICT), they read it again and make the edit on the list as it is then, so a user an admin
 * took off meanwhile is not put back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { EXIT } from './errors.js';
import { run } from './run.js';
import { writeCredentials } from './settings.js';
import { testContext } from './testing/test-context.js';

const SERVER = 'https://control.test';
const json = { headers: { 'content-type': 'application/json' } };
const exposure = (allow: string[]) => ({ name: 'web', owner: 'bob', allow, pinned_node: null, node: null, online: false, port: null, created_at: '2026-12-01T00:00:00.000Z' });
const conflict = { type: 'about:blank', title: 'Conflict', status: 409, code: 'CONFLICT', request_id: 'req_1', detail: 'the allow list of "web" changed since it was read (now: carol); nothing was changed' };

/** A control plane whose exposure `web` reads as `lists` in turn, answering each PUT with the next of `puts` (a status). */
function controlPlane(lists: string[][], puts: number[]) {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(SERVER);
  const sent: unknown[] = [];
  for (const allow of lists) pool.intercept({ path: '/v1/exposures/web', method: 'GET' }).reply(200, JSON.stringify(exposure(allow)), json);
  for (const status of puts) {
    pool.intercept({ path: '/v1/exposures/web', method: 'PUT' }).reply(status, (o) => {
      const body = JSON.parse(String(o.body)) as { allow: string[] };
      sent.push(body);
      return JSON.stringify(status === 200 ? exposure(body.allow) : conflict);
    }, status === 200 ? json : { headers: { 'content-type': 'application/problem+json' } });
  }
  return { agent, sent };
}

function loggedIn(agent: MockAgent) {
  const ctx = testContext({ dispatcher: agent });
  writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return ctx;
}

describe('tunnel exposures allow/deny: an edit of the list as read', () => {
  it('allow: refused because the list changed, it is made again on the list as it is then', async () => {
    // Read [alice, carol]; meanwhile an admin took alice off; the edit is made again on [carol].
    const cp = controlPlane([['alice', 'carol'], ['carol']], [409, 200]);
    const ctx = loggedIn(cp.agent);
    assert.equal(await run(['exposures', 'allow', 'web', 'dave'], ctx), 0, ctx.err());
    assert.deepEqual(cp.sent, [
      { allow: ['alice', 'carol', 'dave'], expect_allow: ['alice', 'carol'] },
      { allow: ['carol', 'dave'], expect_allow: ['carol'] },
    ]);
    assert.equal(ctx.out() + ctx.err(), 'web: may open it besides the owner and admins: carol, dave.\n');
  });

  it('deny: a list that keeps changing ends after 3 tries with the control plane\'s message (exit 1)', async () => {
    const cp = controlPlane([['alice'], ['alice', 'x'], ['alice', 'y']], [409, 409, 409]);
    const ctx = loggedIn(cp.agent);
    assert.equal(await run(['exposures', 'deny', 'web', 'alice'], ctx), EXIT.ERROR);
    assert.equal(cp.sent.length, 3);
    assert.deepEqual(cp.sent.at(-1), { allow: ['y'], expect_allow: ['alice', 'y'] });
    assert.match(ctx.err(), /changed since it was read/);
  });
});
