/**
 * The CLI's channel-limit checks end to end (node/ssh2-internals.ts enforceChannelLimits, wired in
 * cli/ssh/relay-connection.ts), with the real `tunnel open` and `tunnel expose` processes against
 * a rogue relay (test/harness/rogue-relay.ts) that the real control plane sends them to. A relay
 * that sends channel data past the window the CLI granted, or announces a channel maximum packet
 * size of 0, is disconnected: `open --stdio` exits 1 with one line saying why, `expose` says why
 * in its `disconnected` event and reconnects (as after any drop) until stopped, no stack trace
 * either way. Memory: the rogue pushes 256 MiB at a CLI whose reader never reads (open's stdout,
 * expose's local service) and gets only a few MiB in before the CLI hangs up; without the check
 * the CLI read all of it into memory (ssh2 keeps every packet past a window below 0).
 * Also relays whose connection ends in two 'error's on the CLI's ssh2 client (a DISCONNECT then a
 * reset, or a reset before the relay's identification line): the CLI says why once and goes on as
 * after any drop; a second 'error' with no listener crashed it (cli/ssh/relay-connection.ts).
 * And a relay that opens channel after channel to X: `tunnel expose` dials its service for at
 * most --max-connections of them at once and refuses the rest (before: a socket per channel,
 * without end).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { within } from '../node/ssh-tools.js';
import { DROP_GREETING, FLOOD_OPENS, startRogueRelay, type RogueBehaviour, type RogueRelay } from '../harness/rogue-relay.js';
import { cliFixture, oneLine } from '../harness/stack.js';
import { waitForLine } from '../harness/streams.js';

const PUSHED = 256 << 20;
/** What may reach the CLI before it hangs up: its 2 MiB window, one packet, and the sockets' buffers on loopback. */
const BOUND = 64 << 20;

describe('tunnel open and tunnel expose against a rogue relay (real binaries)', () => {
  const f = cliFixture();

  /** A rogue relay for one test, with an exposure pinned to it that bob may open. */
  async function rogueWith(behaviour: RogueBehaviour, exposure: string, run: (rogue: RogueRelay) => Promise<void>): Promise<void> {
    const rogue = await startRogueRelay(f.stack, `rogue-${exposure}`, behaviour, PUSHED);
    try {
      const created = await f.admin.run(['exposures', 'create', exposure, '--node', rogue.name, '--allow', 'bob']);
      assert.equal(created.code, 0, created.stderr);
      await run(rogue);
    } finally {
      await rogue.stop();
    }
  }

  it('tunnel open --stdio: a relay that sends past the window is disconnected (exit 1, one line); it got a few MiB in, not 256', async (t) => {
    await rogueWith('overrun', 'overrun-y', async (rogue) => {
      await rogue.hold('overrun-y', 22);
      const y = f.bob.spawn(['open', 'overrun-y', '--stdio']);
      y.stdout!.pause(); // nobody reads what arrives: the channel's reader is paused
      const sent = await within(rogue.overrun, 60_000, 'the rogue relay never finished its push');
      assert.ok(sent < BOUND, `the rogue relay pushed ${sent} bytes into tunnel open before it hung up`);
      const [code] = (await within(once(y, 'exit'), 30_000, 'tunnel open did not exit')) as [number | null];
      oneLine({ code, ...y.output() }, 1, /^tunnel open: the relay sent channel data beyond the window; disconnected$/m);
      t.diagnostic(`tunnel open hung up after ${sent} bytes of ${PUSHED}`);
    });
  });

  it('tunnel open --stdio: a relay that confirms the channel with a maximum packet size of 0 is disconnected (exit 1, one line)', async () => {
    await rogueWith('tiny-packet', 'tiny-y', async (rogue) => {
      await rogue.hold('tiny-y', 22);
      const r = await f.bob.run(['open', 'tiny-y', '--stdio'], { input: 'x' });
      oneLine(r, 1, /^tunnel open: the relay announced a channel maximum packet size of 0 bytes; disconnected$/m);
    });
  });

  it('tunnel open --stdio: a relay that drops the connection mid-session is exit 5 with one line saying so, after what it sent (not exit 0, as if the session had ended)', async () => {
    await rogueWith('drop', 'drop-y', async (rogue) => {
      await rogue.hold('drop-y', 22);
      const y = f.bob.spawn(['open', 'drop-y', '--stdio']); // stdin stays open: the session has not ended
      const [code] = (await within(once(y, 'exit'), 30_000, 'tunnel open did not exit')) as [number | null];
      const out = y.output();
      assert.equal(out.stdout, DROP_GREETING);
      oneLine({ code, ...out }, 5, /^tunnel open: the connection to the relay ended before the session did: connection closed by the relay$/m);
    });
  });

  it('tunnel open --stdio: a relay that sends DISCONNECT (protocol error), then resets the connection, is exit 5 with one line, after what it sent (two errors on one connection, no crash)', async () => {
    await rogueWith('disconnect-reset', 'reset-y', async (rogue) => {
      await rogue.hold('reset-y', 22);
      const y = f.bob.spawn(['open', 'reset-y', '--stdio']); // stdin stays open: the session has not ended
      const [code] = (await within(once(y, 'exit'), 30_000, 'tunnel open did not exit')) as [number | null];
      const out = y.output();
      assert.equal(out.stdout, DROP_GREETING);
      oneLine({ code, ...out }, 5, /^tunnel open: the connection to the relay ended before the session did: connection error: PROTOCOL_ERROR$/m);
    });
  });

  it('tunnel open --stdio: a relay that resets the connection before its identification line is exit 5 with one line (two errors before ready, no crash)', async () => {
    await rogueWith('reset-before-banner', 'banner-y', async (rogue) => {
      await rogue.hold('banner-y', 22);
      const r = await f.bob.run(['open', 'banner-y', '--stdio'], { input: 'x' });
      oneLine(r, 5, /^tunnel open: cannot reach relay rogue-banner-y at 127\.0\.0\.1:\d+ \(ECONNRESET\)$/m);
    });
  });

  // A relay SIGKILLed while the CLI's connection was in its handshake: the kernel closes the socket
  // with a FIN, and ssh2 emits 'close' and no 'error' (and clears its ready timeout). Before, the
  // CLI's connect waited forever: `open --listen` printed nothing more and never reconnected
  // (its local connections each waited 15 s for a relay connection that never came).
  const HANDSHAKE_ENDED = /^cannot reach relay rogue-handshake-[xy]2? at 127\.0\.0\.1:\d+ \(the connection closed during the SSH handshake\)$/;

  it('tunnel open --listen: a relay that ends the connection mid-handshake (no error, no DISCONNECT): Y says why and tries again', async () => {
    await rogueWith('end-in-handshake', 'handshake-y', async (rogue) => {
      await rogue.hold('handshake-y', 22);
      const y = f.bob.spawn(['open', 'handshake-y', '--listen', '127.0.0.1:0', '--json']);
      for (const nth of [1, 2]) {
        const line = JSON.parse(await waitForLine(y, /"event":"disconnected"/, 30_000, nth)) as { reason: string; retry_in_ms: number };
        assert.match(line.reason, HANDSHAKE_ENDED);
        assert.ok(line.retry_in_ms > 0, JSON.stringify(line));
      }
      y.kill('SIGTERM');
      assert.equal((await once(y, 'exit'))[0], 0, y.output().stderr);
      assert.equal(y.output().stderr, '');
    });
  });

  it('tunnel open --stdio: a relay that ends the connection mid-handshake is exit 5 with one line (it waited forever)', async () => {
    await rogueWith('end-in-handshake', 'handshake-y2', async (rogue) => {
      await rogue.hold('handshake-y2', 22);
      const y = f.bob.spawn(['open', 'handshake-y2', '--stdio']);
      const [code] = (await within(once(y, 'exit'), 30_000, 'tunnel open --stdio did not exit')) as [number | null];
      oneLine({ code, ...y.output() }, 5, new RegExp(`^tunnel open: ${HANDSHAKE_ENDED.source.slice(1)}`, 'm'));
    });
  });

  it('tunnel expose: a relay that ends every connection mid-handshake: X says why and keeps trying; it stops cleanly', async () => {
    await rogueWith('end-in-handshake', 'handshake-x', async () => {
      const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'handshake-x', '--json']);
      for (const nth of [1, 2]) {
        const line = JSON.parse(await waitForLine(x, /"event":"disconnected"/, 30_000, nth)) as { reason: string };
        assert.match(line.reason, HANDSHAKE_ENDED);
      }
      x.kill('SIGTERM');
      assert.equal((await once(x, 'exit'))[0], 0, x.output().stderr);
      assert.equal(x.output().stderr, '');
    });
  });

  it('tunnel expose: a relay that resets every connection before its identification line: X says why and keeps trying; it stops cleanly', async () => {
    await rogueWith('reset-before-banner', 'banner-x', async () => {
      const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'banner-x', '--json']);
      for (const nth of [1, 2]) {
        const line = JSON.parse(await waitForLine(x, /"event":"disconnected"/, 30_000, nth)) as { reason: string };
        assert.match(line.reason, /^cannot reach relay rogue-banner-x at 127\.0\.0\.1:\d+ \(ECONNRESET\)$/);
      }
      x.kill('SIGTERM');
      assert.equal((await once(x, 'exit'))[0], 0, x.output().stderr);
      assert.equal(x.output().stderr, '');
    });
  });

  it('tunnel expose: a relay that opens a channel with a maximum packet size of 0 is disconnected and X says why; it stops cleanly', async () => {
    await rogueWith('tiny-packet', 'tiny-x', async () => {
      const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'tiny-x', '--json']);
      const line = JSON.parse(await waitForLine(x, /"event":"disconnected"/, 30_000)) as { reason: string };
      assert.equal(line.reason, 'connection error: the relay announced a channel maximum packet size of 0 bytes; disconnected');
      x.kill('SIGTERM');
      assert.equal((await once(x, 'exit'))[0], 0, x.output().stderr);
      assert.equal(x.output().stderr, '');
    });
  });

  it('tunnel expose: a relay that sends past the window is disconnected while the local service does not read; it got a few MiB in, not 256', async (t) => {
    const stalled = createServer((s) => s.pause()); // accepts and never reads
    stalled.listen(0, '127.0.0.1');
    await once(stalled, 'listening');
    try {
      await rogueWith('overrun', 'overrun-x', async (rogue) => {
        const x = f.admin.spawn(['expose', String((stalled.address() as { port: number }).port), '--name', 'overrun-x', '--json']);
        const sent = await within(rogue.overrun, 60_000, 'the rogue relay never finished its push');
        assert.ok(sent < BOUND, `the rogue relay pushed ${sent} bytes into tunnel expose before it hung up`);
        const line = JSON.parse(await waitForLine(x, /"event":"disconnected"/, 30_000)) as { reason: string };
        assert.equal(line.reason, 'connection error: the relay sent channel data beyond the window; disconnected');
        x.kill('SIGTERM');
        assert.equal((await once(x, 'exit'))[0], 0, x.output().stderr);
        assert.equal(x.output().stderr, '');
        t.diagnostic(`tunnel expose hung up after ${sent} bytes of ${PUSHED}`);
      });
    } finally {
      stalled.close();
    }
  });

  it('tunnel expose: a relay that opens channel after channel gets --max-connections of them, the rest refused, each refusal said', async () => {
    await rogueWith('open-flood', 'flood-x', async (rogue) => {
      const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'flood-x', '--json', '--max-connections', '4']);
      const tally = await within(rogue.flood, 60_000, 'the rogue relay never heard back on its opens');
      assert.deepEqual(tally, { accepted: 4, refused: FLOOD_OPENS - 4 });
      await waitForLine(x, /"event":"channel_refused"/, 30_000, FLOOD_OPENS - 4);
      const refused = x
        .output()
        .stdout.split('\n')
        .filter((l) => l.includes('"channel_refused"'))
        .map((l) => JSON.parse(l) as { reason: string; max_connections: number });
      assert.deepEqual(refused[0], { ...refused[0], reason: 'max_connections', max_connections: 4 });
      x.kill('SIGTERM');
      assert.equal((await once(x, 'exit'))[0], 0, x.output().stderr);
      assert.equal(x.output().stderr, '');
    });
  });

  it('tunnel expose --max-connections takes 1 to 65535 (exit 2, one line otherwise)', async () => {
    for (const bad of ['0', '65536', 'many', '1.5']) {
      const r = await f.admin.run(['expose', '22', '--name', 'cap-x', '--max-connections', bad]);
      oneLine(r, 2, /--max-connections must be a whole number from 1 to 65535/);
    }
  });
});
