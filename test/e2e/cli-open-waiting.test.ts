/**
 * `tunnel open --listen` with many local connections arriving while it has no connection to the
 * relay, with the real binaries: they wait for the next connection (at most 15 s) and are then
 * served, with nothing but the usual lines on stderr.
 * - Before the first connection (the exposure is offline until X starts): each waiting
 *   connection added a `once(sup, 'connected')` listener, and the 11th made Node print a
 *   MaxListenersExceededWarning.
 * - While the relay restarts: the connection that had closed was still handed out, so each local
 *   connection failed at once with "Not connected" instead of waiting for the next one.
 * In both halves Y may be connected before X's forward is back at the relay (the control plane
 * counts an exposure whose X just got its lease as connecting): the relay refuses "offline" for
 * that moment, and the waiting connections try again (open-when-online.ts) rather than fail.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MAX_WAITING } from '../../cli/ssh/lease-session.js';
import { startStack, type CliUser, type Stack } from '../harness/stack.js';
import { echoService, roundTrip, waitForLine } from '../harness/streams.js';

/** More than the relay's --max-pending-opens (32 by default): they all open at once when the connection comes. */
const WAITING = 64;
/** Local connections made at once at most (Node's listen backlog is 511: more would wait for SYN retries). */
const BATCH = 128;

/** WAITING round trips through `port` at once; how many came back intact. */
async function served(port: number, what: string): Promise<number> {
  const outcomes = await Promise.all(
    Array.from({ length: WAITING }, async (_, i) => {
      const text = `${what} ${i}\n`;
      const got = await roundTrip(port, Buffer.from(text)).catch(() => Buffer.alloc(0));
      return got.toString() === `${text}bye\n`;
    }),
  );
  return outcomes.filter(Boolean).length;
}

/** A TCP connection to `port`, once it is established. */
async function connected(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/**
 * `n` local connections to `port` whose clients go away at once: reset (RST), or closed (FIN) with
 * nothing sent. Connected in batches, never waiting for Y to give one up before the next comes;
 * resolves once Y closed its side of each closed one (the reset ones have no side left to tell).
 */
async function goneClients(port: number, n: number, how: 'reset' | 'close'): Promise<void> {
  const closed: Promise<unknown>[] = [];
  for (let done = 0; done < n; done += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, n - done) }, async () => {
        const s = await connected(port);
        if (how === 'reset') return void s.resetAndDestroy();
        // Y's FIN (or reset) once it gave the connection up: then 'close'.
        closed.push(new Promise((resolve) => s.once('close', resolve)));
        s.end();
      }),
    );
  }
  await Promise.all(closed);
}

/** Y's stderr has only one-line messages of its own: no Node warning, no stack trace. */
function cleanStderr(stderr: string): void {
  assert.doesNotMatch(stderr, /Warning|MaxListeners|\n\s+at /, stderr);
}

describe('tunnel open --listen: local connections waiting for the relay (real binaries)', { timeout: 180_000 }, () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof echoService>>;
  let admin: CliUser;
  let bob: CliUser;
  before(async () => {
    stack = await startStack();
    echo = await echoService();
    admin = await stack.user('admin');
    bob = await stack.user('bob');
  });
  after(async () => {
    echo?.server.close();
    await stack?.stop();
  });

  it(`${WAITING} connections before the first connection, ${WAITING} during a relay restart and ${WAITING} while X reconnects are served`, async () => {
    const created = await admin.run(['exposures', 'create', 'wait-x', '--allow', 'bob']);
    assert.equal(created.code, 0, created.stderr);
    // The exposure is offline: Y listens and keeps asking for a lease.
    const y = bob.spawn(['open', 'wait-x', '--listen', '127.0.0.1:0', '--json']);
    const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string };
    const port = Number(listening.address.split(':').pop());
    // Y has been refused a lease: it waits for X, and so do the connections (X takes seconds to start).
    await waitForLine(y, /"event":"disconnected"/);
    const x = admin.spawn(['expose', String(echo.port), '--name', 'wait-x', '--json']);
    const first = served(port, 'first');
    await waitForLine(x, /"event":"connected"/);
    assert.equal(await first, WAITING, `Y: ${y.output().stderr}\n${y.output().stdout.slice(-3000)}`);
    cleanStderr(y.output().stderr);

    // The relay dies: Y's connection closes. Connections that come now wait for the next one.
    await stack.relay.stop('SIGKILL');
    await waitForLine(y, /"event":"disconnected"/, 20_000, 2);
    const during = served(port, 'during');
    await stack.restartRelay('SIGKILL');
    assert.equal(await during, WAITING, `Y: ${y.output().stderr}\n${y.output().stdout.slice(-3000)}`);
    cleanStderr(y.output().stderr);

    // X goes away and comes back while Y stays connected: the relay refuses "offline" meanwhile,
    // and the connections that come then are tried again until X is back.
    x.kill('SIGTERM');
    await once(x, 'exit');
    const away = served(port, 'away');
    const x2 = admin.spawn(['expose', String(echo.port), '--name', 'wait-x', '--json']);
    await waitForLine(x2, /"event":"connected"/);
    assert.equal(await away, WAITING, `Y: ${y.output().stderr}\n${y.output().stdout.slice(-3000)}`);
    cleanStderr(y.output().stderr);
    for (const p of [x2, y]) {
      p.kill('SIGTERM');
      await once(p, 'exit');
    }
  });

  it(`clients that go away while waiting stop waiting at once: ${MAX_WAITING + MAX_WAITING / 2} of them keep no one out, get no channel and no line`, async () => {
    const created = await admin.run(['exposures', 'create', 'wait-leavers', '--allow', 'bob']);
    assert.equal(created.code, 0, created.stderr);
    let serviceConnections = 0;
    const count = () => serviceConnections++;
    echo.server.on('connection', count);
    try {
      const y = bob.spawn(['open', 'wait-leavers', '--listen', '127.0.0.1:0', '--json']);
      const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string };
      const port = Number(listening.address.split(':').pop());
      // The exposure is offline: Y has no relay connection, every local connection waits for one.
      await waitForLine(y, /"event":"disconnected"/);
      // Half as many as may wait reset, then as many as may wait close with nothing sent. Before,
      // each kept its place for 15 s: the waiting list (MAX_WAITING) was full and the rest were
      // refused, a channel_failed line each, and those that waited got one at the end of the 15 s.
      await goneClients(port, MAX_WAITING / 2, 'reset');
      await goneClients(port, MAX_WAITING, 'close');
      assert.doesNotMatch(y.output().stdout, /channel_failed/, y.output().stdout.slice(-3000));
      // Connections that stay wait and are served: each sends its request and shuts down its write
      // side while it waits (roundTrip), and gets the echo and the service's answer to its end.
      const first = served(port, 'stayed');
      const x = admin.spawn(['expose', String(echo.port), '--name', 'wait-leavers', '--json']);
      await waitForLine(x, /"event":"connected"/);
      assert.equal(await first, WAITING, `Y: ${y.output().stderr}\n${y.output().stdout.slice(-3000)}`);
      // No channel was opened for a client that had gone: X connected to the service for the others only.
      assert.equal(serviceConnections, WAITING);

      // X goes away while Y stays connected: the relay refuses "offline", and local connections
      // pause before trying again; clients that go away in the pause stop waiting too.
      x.kill('SIGTERM');
      await once(x, 'exit');
      await goneClients(port, WAITING, 'reset');
      await goneClients(port, WAITING, 'close');
      assert.doesNotMatch(y.output().stdout, /channel_failed/, y.output().stdout.slice(-3000));
      const again = served(port, 'again');
      const x2 = admin.spawn(['expose', String(echo.port), '--name', 'wait-leavers', '--json']);
      await waitForLine(x2, /"event":"connected"/);
      assert.equal(await again, WAITING, `Y: ${y.output().stderr}\n${y.output().stdout.slice(-3000)}`);
      assert.equal(serviceConnections, 2 * WAITING);

      const { stdout, stderr } = y.output();
      assert.doesNotMatch(stdout + stderr, /channel_failed/, stdout.slice(-3000) + stderr);
      cleanStderr(stderr);
      for (const p of [x2, y]) {
        p.kill('SIGTERM');
        await once(p, 'exit');
      }
    } finally {
      echo.server.off('connection', count);
    }
  });

  it('stopping refuses the waiting connections at once, without a line for each', async () => {
    const created = await admin.run(['exposures', 'create', 'wait-never', '--allow', 'bob']);
    assert.equal(created.code, 0, created.stderr);
    const y = bob.spawn(['open', 'wait-never', '--listen', '127.0.0.1:0', '--json']);
    const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string };
    const port = Number(listening.address.split(':').pop());
    await waitForLine(y, /"event":"disconnected"/);
    const socks = await Promise.all(Array.from({ length: 5 }, () => connected(port)));
    // Closed (or reset): `once` would reject on the reset's 'error'.
    const closed = socks.map((s) => new Promise((resolve) => s.once('close', resolve)));
    y.kill('SIGTERM');
    await Promise.all(closed);
    await once(y, 'exit');
    const { stdout, stderr } = y.output();
    assert.doesNotMatch(stdout + stderr, /channel_failed|no connection to the relay/, stdout + stderr);
    cleanStderr(stderr);
  });

  it('a refusal for good (the exposure deleted) ends tunnel open with that one line, not one more for each waiting connection', async () => {
    const created = await admin.run(['exposures', 'create', 'wait-gone', '--allow', 'bob']);
    assert.equal(created.code, 0, created.stderr);
    const y = bob.spawn(['open', 'wait-gone', '--listen', '127.0.0.1:0']);
    const listening = await waitForLine(y, /Listening on/);
    const port = Number(/:(\d+) for/.exec(listening)![1]);
    await waitForLine(y, /reconnecting/);
    const socks = await Promise.all(Array.from({ length: 5 }, () => connected(port)));
    const closed = socks.map((s) => new Promise((resolve) => s.once('close', resolve)));
    const exited = once(y, 'exit');
    const rm = await admin.run(['exposures', 'rm', 'wait-gone']);
    assert.equal(rm.code, 0, rm.stderr);
    const [code] = (await exited) as [number];
    await Promise.all(closed);
    const { stderr } = y.output();
    assert.notEqual(code, 0, stderr);
    assert.doesNotMatch(stderr, /no connection to the relay/, stderr);
    cleanStderr(stderr);
  });
});
