/**
 * A prompt (tunnel login --password, tunnel admin users add --password) takes the stop like any
 * other wait: exit 130 (stopped) with one line, code STOPPED. On a terminal Ctrl-C is a key readline reads
 * (raw mode), not a SIGINT; elsewhere SIGINT reaches the CLI as its stop signal. Before, the
 * signal was ignored until a line came (the second one exited 130 without a word), and Ctrl-C at a
 * terminal closed readline with the prompt's promise never settled (exit 13, nothing said): on
 * that code these runs never settle. "Waiting" is an event here: readline resumed the input. The
 * terminal is a stream that says it is one; the built CLI under a real pty behaves the same.
 */
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { EXIT } from './errors.js';
import { run } from './run.js';
import { writeCredentials } from './settings.js';
import { testContext } from './testing/test-context.js';

const SERVER = 'https://control.test';
const t = { timeout: 5_000 };

/** Answers nothing: a request made would fail the run another way. */
function noServer(): MockAgent {
  const agent = new MockAgent();
  agent.disableNetConnect();
  return agent;
}

/** Standard input that stays open; a terminal's (raw mode taken, nothing echoed) when `tty`. */
function openStdin(tty: boolean) {
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  if (tty) {
    stdin.isTTY = true;
    stdin.setRawMode = () => stdin;
  }
  return stdin;
}

const cases: { argv: string[]; prompt: string; loggedIn?: boolean }[] = [
  { argv: ['login', '--password', '--server', SERVER], prompt: 'User' },
  { argv: ['login', '--password', '--user', 'bob', '--server', SERVER], prompt: 'Password' },
  { argv: ['admin', 'users', 'add', 'carol', '--password'], prompt: 'Password for the new user', loggedIn: true },
];

function context(stdin: PassThrough, loggedIn = false) {
  const ctx = testContext({ dispatcher: noServer(), stdin });
  if (loggedIn) writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000 });
  return ctx;
}

describe('the stop at a prompt', () => {
  for (const c of cases) {
    const command = c.argv[0]!;
    it(`${c.argv.join(' ')}, no terminal: the stop signal ends the wait for a line (exit 130, one line)`, t, async () => {
      const stdin = openStdin(false);
      const ctx = context(stdin, c.loggedIn);
      const code = run(c.argv, ctx);
      await once(stdin, 'resume');
      ctx.abort();
      assert.equal(await code, EXIT.STOPPED);
      assert.equal(ctx.err(), `tunnel ${command}: stopped at the prompt "${c.prompt}"\n`);
      assert.equal(getEventListeners(ctx.stopSignal, 'abort').length, 0);
    });

    it(`${c.argv.join(' ')}, at a terminal: Ctrl-C typed, or the stop signal, ends it the same way, on a line of its own`, t, async () => {
      for (const how of ['ctrl-c', 'signal'] as const) {
        const stdin = openStdin(true);
        const ctx = context(stdin, c.loggedIn);
        const code = run(c.argv, ctx);
        await once(stdin, 'resume');
        if (how === 'ctrl-c') stdin.write('\x03');
        else ctx.abort();
        assert.equal(await code, EXIT.STOPPED, how);
        assert.equal(ctx.err(), `${c.prompt}: \ntunnel ${command}: stopped at the prompt "${c.prompt}"\n`, how);
      }
    });
  }

  it('input that ends first is a usage error (exit 2), piped (CI has no stdin) or Ctrl-D at a terminal', t, async () => {
    const none = testContext({ dispatcher: noServer() });
    assert.equal(await run(['login', '--password', '--server', SERVER], none), EXIT.USAGE);
    assert.equal(none.err(), 'tunnel login: User expected on standard input\n');
    const stdin = openStdin(true);
    const ctx = context(stdin);
    const code = run(['login', '--password', '--user', 'bob', '--server', SERVER], ctx);
    await once(stdin, 'resume');
    stdin.write('\x04');
    assert.equal(await code, EXIT.USAGE);
    assert.equal(ctx.err(), 'Password: \ntunnel login: Password expected on standard input\n');
  });

  it('a line typed at a terminal is still the answer (the password not echoed)', t, async () => {
    const stdin = openStdin(true);
    const ctx = context(stdin);
    const code = run(['login', '--password', '--user', 'bob', '--server', SERVER], ctx);
    await once(stdin, 'resume');
    stdin.write('s3cret\r');
    // The mock answers nothing, so the login fails after the prompt: past the prompt is what counts.
    assert.notEqual(await code, EXIT.USAGE);
    assert.match(ctx.err(), /^Password: \ntunnel login: /);
    assert.doesNotMatch(ctx.err(), /s3cret/);
  });
});
