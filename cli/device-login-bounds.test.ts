import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once, type EventEmitter } from 'node:events';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MockAgent } from 'undici';
import { run } from './run.js';
import { EXIT } from './errors.js';
import { testContext, type TestContext } from './testing/test-context.js';
import { tempDir } from '../shared/testing/temp-dir.js';

/**
 * The device login's numbers come from the control plane: a hostile or broken one must not make
 * the CLI poll in a tight loop (an interval past Node's longest timer fires at once) nor wait for
 * ever (slow_down answered past the code's expiry).
 */
const SERVER = 'https://control.test';
const json = { headers: { 'content-type': 'application/json' } };

function deviceAnswer(agent: MockAgent, fields: { expires_in: number; interval: number; verification_uri_complete?: string }): void {
  agent
    .get(SERVER)
    .intercept({ path: '/v1/auth/device', method: 'POST' })
    .reply(200, JSON.stringify({ device_code: 'dc', user_code: 'ABCD-EFGH', verification_uri: `${SERVER}/device`, verification_uri_complete: `${SERVER}/device?c=ABCD-EFGH`, ...fields }), json);
}

/** Every poll of the token endpoint answered with the problem `code`; returns how many came. */
function tokenAnswers(agent: MockAgent, code: string): { readonly polled: number } {
  const count = { polled: 0 };
  agent
    .get(SERVER)
    .intercept({ path: '/v1/auth/token', method: 'POST' })
    .reply(() => {
      count.polled++;
      return { statusCode: 400, data: JSON.stringify({ type: 'x', title: 'x', status: 400, code, request_id: 'r' }), responseOptions: json };
    })
    .persist();
  return count;
}

async function untilWaiting(ctx: TestContext): Promise<void> {
  while (!ctx.err().includes('Waiting for approval')) await once(ctx.stderr as unknown as EventEmitter, 'data');
}

describe('tunnel login: the device flow\'s interval and expiry are bounded', () => {
  it('an interval longer than a timer can wait is not a poll at once (no TimeoutOverflowWarning, no request)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      for (const interval of [2 ** 31, Number.MAX_SAFE_INTEGER]) {
        const agent = new MockAgent();
        agent.disableNetConnect();
        deviceAnswer(agent, { expires_in: 600, interval });
        const token = tokenAnswers(agent, 'AUTHORIZATION_PENDING');
        const ctx = testContext({ dispatcher: agent });
        const done = run(['login', '--server', SERVER], ctx);
        await untilWaiting(ctx);
        // A warning is emitted on the next tick of the timer's creation; a 1 ms timer has fired by the next macrotask or two.
        await new Promise((r) => setImmediate(r));
        ctx.abort();
        assert.equal(await done, EXIT.STOPPED, ctx.err());
        assert.equal(token.polled, 0, `interval ${interval}`);
      }
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.filter((w) => w.name === 'TimeoutOverflowWarning').map((w) => w.message),
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('slow_down past the code\'s expiry ends the login (exit 3, one line) instead of polling for ever', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    deviceAnswer(agent, { expires_in: 0, interval: 1 });
    const token = tokenAnswers(agent, 'SLOW_DOWN');
    const ctx = testContext({ dispatcher: agent });
    assert.equal(await run(['login', '--server', SERVER], ctx), EXIT.NOT_LOGGED_IN, ctx.err());
    assert.equal(token.polled, 1);
    assert.match(ctx.err(), /the login code expired before it was approved/);
  });

  it('--browser opens only an http(s) URL: a file:, other scheme or option-like one the control plane sent is only printed', async () => {
    // A stand-in xdg-open (this test file runs in a process of its own), so nothing real is opened.
    const bin = tempDir('tunnel-xdg-');
    writeFileSync(join(bin, 'xdg-open'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      for (const url of ['file:///etc/passwd', 'smb://attacker.test/share', '--help', 'javascript:alert(1)']) {
        const agent = new MockAgent();
        agent.disableNetConnect();
        deviceAnswer(agent, { expires_in: 600, interval: 5, verification_uri_complete: url });
        const ctx = testContext({ dispatcher: agent });
        const done = run(['login', '--server', SERVER, '--browser'], ctx);
        await untilWaiting(ctx);
        ctx.abort();
        assert.equal(await done, EXIT.STOPPED, ctx.err());
        assert.match(ctx.err(), /not opening the approval page in a browser/, url);
      }
    } finally {
      process.env.PATH = path;
    }
  });

  it('--browser hands xdg-open the URL as parsed, not as sent: tabs and line breaks inside it and spaces around it are gone', { timeout: 60_000 }, async () => {
    // The stand-in writes the argument it got into a FIFO, which this test reads once it closes.
    const bin = tempDir('tunnel-xdg-');
    const fifo = join(bin, 'opened');
    execFileSync('mkfifo', [fifo]);
    writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${fifo}'\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      const agent = new MockAgent();
      agent.disableNetConnect();
      deviceAnswer(agent, { expires_in: 600, interval: 5, verification_uri_complete: ` ${SERVER}/dev\tice?c=AB\nCD ` });
      const ctx = testContext({ dispatcher: agent });
      const done = run(['login', '--server', SERVER, '--browser'], ctx);
      const opened = await readFile(fifo, 'utf8');
      await untilWaiting(ctx);
      ctx.abort();
      assert.equal(await done, EXIT.STOPPED, ctx.err());
      assert.equal(opened, `${SERVER}/device?c=ABCD`);
    } finally {
      process.env.PATH = path;
    }
  });
});
