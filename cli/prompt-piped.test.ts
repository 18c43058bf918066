/**
 * Piped answers to two prompts, one a line: `printf 'bob\npw\n' | tunnel login --password`. Each
 * prompt had its own readline interface, and the first read the whole pipe ahead of its line, so
 * the second found the input used up ('Password expected on standard input', exit 2). A line
 * is at most 64 KiB: a longer one was buffered whole and sent as the user name.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { EXIT } from './errors.js';
import { MAX_LINE } from './prompt.js';
import { run } from './run.js';
import { readCredentials } from './settings.js';
import { testContext } from './testing/test-context.js';

const SERVER = 'https://control.test';
const JSON_TYPE = { headers: { 'content-type': 'application/json' } };

describe('piped standard input', () => {
  it('tunnel login --password takes the user from the first line and the password from the second', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get(SERVER);
    pool
      .intercept({ path: '/v1/auth/token', method: 'POST', body: (b) => JSON.parse(b).username === 'bob' && JSON.parse(b).password === 'pw 2' })
      .reply(200, JSON.stringify({ access_token: 'at', token_type: 'Bearer', expires_in: 600, refresh_token: 'rt' }), JSON_TYPE);
    pool.intercept({ path: '/v1/me', method: 'GET' }).reply(200, JSON.stringify({ id: 'usr_1', name: 'bob', role: 'member' }), JSON_TYPE);
    const ctx = testContext({ dispatcher: agent, stdin: 'bob\npw 2\nmore\n' });
    assert.equal(await run(['login', '--password', '--server', SERVER], ctx), 0, ctx.err());
    assert.equal(readCredentials(ctx)?.user, 'bob');
  });

  it('one line for two prompts: the second says its answer is missing (exit 2)', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const ctx = testContext({ dispatcher: agent, stdin: 'bob\n' });
    assert.equal(await run(['login', '--password', '--server', SERVER], ctx), EXIT.USAGE);
    assert.equal(ctx.err(), 'tunnel login: Password expected on standard input\n');
  });

  for (const [what, stdin] of [
    ['ended within the input', 'x'.repeat(MAX_LINE + 1) + '\npw\n'],
    ['never ended', 'x'.repeat(3 * MAX_LINE)],
  ] as const) {
    it(`a piped line longer than 64 KiB (${what}) is refused (exit 2), not buffered whole`, async () => {
      const agent = new MockAgent();
      agent.disableNetConnect();
      const ctx = testContext({ dispatcher: agent, stdin });
      assert.equal(await run(['login', '--password', '--server', SERVER], ctx), EXIT.USAGE, ctx.err());
      assert.match(ctx.err(), /^tunnel login: [^\n]*a line on standard input is longer than 64 KiB\n$/);
    });
  }
  it('standard input that fails to read (EIO) is one line and exit 1, not a stack trace', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    // The first line, then the read after it fails, as a pipe or terminal that went away does.
    let reads = 0;
    const stdin = new Readable({
      read() {
        if (reads++ === 0) this.push('bob\n');
        else this.destroy(Object.assign(new Error('input/output error'), { code: 'EIO' }));
      },
    });
    const ctx = testContext({ dispatcher: agent, stdin });
    assert.equal(await run(['login', '--password', '--server', SERVER], ctx), EXIT.ERROR);
    assert.equal(ctx.err(), 'tunnel login: Password: cannot read standard input (EIO)\n');
  });
});
