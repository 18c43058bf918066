/**
 * Hostile members: channels across connections. Every bridged channel may hold up to the window
 * the relay granted its Y (2 MiB) while the other side is slow, and only a connection's channels
 * were bounded (--max-channels-per-connection): a member with its own exposure that accepts
 * channels and never reads them, and as many `open` leases as it likes, held 1 MiB of relay memory
 * per channel it opened (128 MiB with 128 channels over two connections, measured on the relay
 * process), with no bound across connections. --max-channels-per-member bounds them; and
 * --max-connections-per-member bounds a member's connections (a socket and about 30 KB each), which
 * as many leases as it asks the control plane for made unbounded too.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { sendGlobalRequest } from '../../cli/ssh/ssh2-cert-auth.js';
import { openDirect } from './hostile-clients.js';
import { relayUnderTest } from './relay-under-test.js';

/** X: binds `exposure` and accepts every channel into it without reading; `accepted` gets each, in order. */
async function exposeSink(client: Client, exposure: string, accepted: (ch: ClientChannel) => void = () => {}): Promise<void> {
  client.on('tcp connection', (_info, accept) => accepted(accept().pause()));
  await new Promise<void>((resolve, reject) => client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

/**
 * A global request `c` sends and the relay refuses: once its answer is back, the relay has read
 * and handled everything `c` sent before it, and `c` everything the relay sent before the answer
 * (one connection's packets are handled in order). A keepalive, not a `tcpip-forward`: those
 * count against --max-forwards-per-minute, and the loop below may take more round trips.
 */
async function roundTrip(c: Client): Promise<void> {
  await sendGlobalRequest(c, 'keepalive@openssh.com', Buffer.alloc(0));
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => 'opened',
    (err: Error) => err.message,
  );

describe('hostile: one member holds at most --max-channels-per-member channels across its connections', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-channels-per-member', '3']);

  it('a member with two connections gets 3 channels in all; another member still gets one; a closed one frees its place', async () => {
    // X's channels of sink-a, in the order Y opened them.
    const xa: ClientChannel[] = [];
    await exposeSink((await t.member('hog', { grant: { kind: 'expose', exposure: 'sink-a', port: 22 } })).client, 'sink-a', (ch) => xa.push(ch));
    await exposeSink((await t.member('hog', { grant: { kind: 'expose', exposure: 'sink-b', port: 22 } })).client, 'sink-b');
    const ya = await t.member('hog', { grant: { kind: 'open', exposure: 'sink-a' } });
    const yb = await t.member('hog', { grant: { kind: 'open', exposure: 'sink-b' } });

    const held: ClientChannel[] = [await openDirect(ya.client, 'sink-a', 22), await openDirect(ya.client, 'sink-a', 22), await openDirect(yb.client, 'sink-b', 22)];
    assert.match(await refusal(openDirect(yb.client, 'sink-b', 22)), /: busy: you hold 3 channels through this relay/);

    // Another member is not held to hog's count.
    const other = await t.member('other', { grant: { kind: 'open', exposure: 'sink-a' } });
    await openDirect(other.client, 'sink-a', 22);

    // A channel hog closes is given back once the relay's bridge has closed it: the bridge gives
    // it back as it closes X's side, so X's CLOSE for it comes after (X's channel, read to its
    // end, then emits 'close').
    const xSide = xa[0]!;
    const xClosed = new Promise((resolve) => xSide.once('close', resolve));
    xSide.resume();
    held[0]!.close();
    await xClosed;
    await openDirect(yb.client, 'sink-b', 22);
    assert.match(await refusal(openDirect(ya.client, 'sink-a', 22)), /: busy: you hold 3 /);
  });
});

describe('hostile: one member holds at most --max-connections-per-member connections across its leases', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-connections-per-member', '2']);

  it("a member's third connection (a lease of its own) is refused; another member's is not; a closed one frees its place", async () => {
    const first = await t.member('many');
    await t.member('many', { grant: { kind: 'open', exposure: 'elsewhere' } });
    const from = t.relay.logger.lines.length;
    await assert.rejects(t.member('many'), (err: Error & { level?: string }) => err.level === 'client-authentication');
    const refused = await t.relay.logger.waitFor((l) => l.msg === 'authentication refused', 10_000, from);
    assert.equal(refused.fields.reason, 'too_many_member_connections');
    await t.member('someone-else');

    const closedFrom = t.relay.logger.lines.length;
    first.client.end();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === first.leaseId, 10_000, closedFrom);
    await t.member('many');
  });
});

describe('hostile: connections refused for a member over its limit are not failures of its address', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-connections-per-member', '1', '--auth-failures-per-minute', '2']);

  it("a member's refused connections (valid leases, over its limit) leave its address open to others", async () => {
    await t.member('full');
    for (let i = 0; i < 3; i++) {
      const from = t.relay.logger.lines.length;
      await assert.rejects(t.member('full'), (err: Error & { level?: string }) => err.level === 'client-authentication');
      assert.equal((await t.relay.logger.waitFor((l) => l.msg === 'authentication refused', 10_000, from)).fields.reason, 'too_many_member_connections');
    }
    // Three refusals from 127.0.0.1 at a limit of 2 failures a minute: counted, the next
    // connection from it would be turned away before authentication.
    await t.member('neighbour');
  });
});

describe('hostile: a channel the relay cannot pass on holds at most its window in the relay', { timeout: 120_000 }, () => {
  const t = relayUnderTest();

  it("an ssh2 (non-CLI) Y pushing into its own exposure that never reads leaves at most 2 MiB (plus X's write queue) in the relay", async () => {
    let xch: ClientChannel | undefined;
    const x = await t.member('pusher', { grant: { kind: 'expose', exposure: 'sink-w', port: 22 } });
    await exposeSink(x.client, 'sink-w', (c) => (xch = c));
    const y = await t.member('pusher', { grant: { kind: 'open', exposure: 'sink-w' } });
    const ch = await openDirect(y.client, 'sink-w', 22);
    const chunk = Buffer.alloc(32 * 1024, 7);
    for (let i = 0; i < 256; i++) ch.write(chunk); // 8 MiB: more than X's window and the relay's together
    const window = () => (ch as unknown as { outgoing: { window: number } }).outgoing.window;
    const held = () => Number(/^tunnel_node_bridge_buffer_bytes (\d+)$/m.exec(t.relay.relay.metricsText())?.[1] ?? NaN);
    // What every side has: Y's window and what it has yet to send, what X took, what the relay holds.
    const state = () => {
      const xs = xch as unknown as { readableLength: number; incoming: { window: number } } | undefined;
      return [window(), ch.writableLength, xs?.readableLength, xs?.incoming.window, held()].join(' ');
    };
    // Settled: through a round trip with Y, then X, then Y again, nothing moved and Y has no window
    // left. Every packet either peer sent before its round trip has been handled by then, and so
    // has everything the relay sent in answer; each step of the stream answers a packet (Y's data,
    // X's window), so no packet is left to move anything.
    let last = '';
    for (let i = 0; ; i++) {
      assert.ok(i < 10_000, 'the stream never settled');
      await roundTrip(y.client);
      await roundTrip(x.client);
      await roundTrip(y.client);
      const now = state();
      if (now === last && window() === 0) break;
      last = now;
    }
    const relayHeld = held();
    assert.ok(relayHeld <= 2 * 1024 * 1024 + 128 * 1024, `the relay holds ${relayHeld} bytes of one paused channel`);
  });
});
