/**
 * `tunnel nodes wait NAME`: what docs/deploy.md step 4 waits with for its relay to enroll. Silent
 * while it waits (a loop around `tunnel nodes` printed "(none)" on every pass), one line when the
 * relay is online, exit 1 with one line at the timeout, 130 on a stop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { run } from '../run.js';
import { EXIT } from '../errors.js';
import { writeCredentials } from '../settings.js';
import { testContext } from '../testing/test-context.js';

const SERVER = 'https://control.test';

function node(name: string, online: boolean) {
  return {
    id: `node_${name}`,
    name,
    address: `${name}.example.net:2222`,
    host_key: 'ssh-ed25519 AAAA',
    online,
    last_seen_at: online ? new Date().toISOString() : null,
    enrolled_at: new Date().toISOString(),
    active_exposures: 0,
    egress_driver: online ? 'iptables' : null,
    native_crypto: null,
    version: null,
  };
}

/** A control plane whose GET /v1/nodes answers each of `answers` in turn (the last one for good). */
function controlAnswering(...answers: ReturnType<typeof node>[][]) {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(SERVER);
  let asked = 0;
  pool
    .intercept({ path: '/v1/nodes', method: 'GET' })
    .reply(() => ({ statusCode: 200, data: JSON.stringify({ nodes: answers[Math.min(asked++, answers.length - 1)] }), responseOptions: { headers: { 'content-type': 'application/json' } } }))
    .persist();
  const ctx = testContext({ dispatcher: agent });
  writeCredentials(ctx, { server: SERVER, user: 'admin', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return { ctx, asked: () => asked };
}

describe('tunnel nodes wait', () => {
  it('waits without a word while the relay has not enrolled, then is enrolled but offline, and prints one line once it is online', async () => {
    const { ctx, asked } = controlAnswering([], [node('relay-z', false)], [node('other', true), node('relay-z', true)]);
    assert.equal(await run(['nodes', 'wait', 'relay-z'], ctx), 0, ctx.err());
    assert.equal(asked(), 3);
    assert.equal(ctx.err(), '', 'nothing on stderr while it waits');
    assert.equal(ctx.out(), 'Relay relay-z is online at relay-z.example.net:2222.\n');
  });

  it('--json prints the node', async () => {
    const { ctx } = controlAnswering([node('relay-z', true)]);
    assert.equal(await run(['nodes', 'wait', 'relay-z', '--json'], ctx), 0, ctx.err());
    assert.equal((JSON.parse(ctx.out()) as { name: string }).name, 'relay-z');
  });

  it('gives up at --timeout with exit 1 and one line that says how far the relay got (0 looks once)', async () => {
    for (const [nodes, said] of [[[], /relay relay-z has not enrolled after 0 s/], [[node('relay-z', false)], /relay relay-z is enrolled but not online after 0 s/]] as const) {
      const { ctx, asked } = controlAnswering([...nodes]);
      assert.equal(await run(['nodes', 'wait', 'relay-z', '--timeout', '0'], ctx), EXIT.ERROR);
      assert.equal(asked(), 1);
      assert.equal(ctx.out(), '');
      assert.equal(ctx.err().trim().split('\n').length, 1, ctx.err());
      assert.match(ctx.err(), said);
    }
  });

  it('a stop while it waits exits 130 with one line', async () => {
    const { ctx, asked } = controlAnswering([]);
    let ended = false;
    const code = run(['nodes', 'wait', 'relay-z'], ctx).finally(() => (ended = true));
    while (asked() === 0 && !ended) await new Promise((resolve) => setImmediate(resolve));
    ctx.abort();
    assert.equal(await code, EXIT.STOPPED);
    assert.equal(ctx.err().trim().split('\n').length, 1, ctx.err());
  });

  it('malformed: no NAME, a bad --timeout, --timeout without wait: exit 2 before any request', async () => {
    for (const argv of [['nodes', 'wait'], ['nodes', 'wait', 'a', 'b'], ['nodes', 'wait', 'a', '--timeout', 'soon'], ['nodes', '--timeout', '5']]) {
      const { ctx, asked } = controlAnswering([]);
      assert.equal(await run(argv, ctx), EXIT.USAGE, `${argv.join(' ')}: ${ctx.err()}`);
      assert.equal(asked(), 0);
    }
  });
});
