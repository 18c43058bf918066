/**
 * A connection the relay ends ends the bridges on both its sides at once. Y's own bridges already
 * did (end() aborts them); the bridges into X's exposure, which Y's connections hold, ended only
 * when ssh2 closed X's channels, after X's socket had closed: up to 2 s after the relay's
 * DISCONNECT for a revoked X, and never for a channel whose data waited unread for Y's window
 * (ssh2 emits its 'close' only once that is read), which kept Y's channel open, and its places
 * held, until Y closed it. In-process relay against the fake control plane, ssh2 peers; the
 * ended peer ignores the DISCONNECT (it stops reading), so its socket closes only at the relay's
 * 2 s deadline, and the other peer must see its channels close before that.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { ignoreEverything, openDirect } from './hostile-clients.js';
import type { LogLine } from '../harness/relay.js';
import { connCloseOf, relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

const DATA = Buffer.alloc(4096, 0x58);

interface PeerProtocol {
  directTcpip(chan: number, initWindow: number, maxPacket: number, cfg: unknown): void;
  channelWindowAdjust(id: number, amount: number): void;
}

/** X: binds `exposure`, writes DATA on every channel it accepts, and hands it to `accepted`. */
async function exposeWriting(x: Client, exposure: string, accepted: (ch: ClientChannel) => void): Promise<void> {
  x.on('tcp connection', (_info, accept) => {
    const ch = accept();
    ch.on('error', () => {});
    ch.resume();
    ch.write(DATA);
    accepted(ch);
  });
  await new Promise<void>((resolve, reject) => x.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

/** Y's channel to `exposure`, opened with a window of 0: what X writes on it waits in the relay. */
async function openStalled(y: Client, exposure: string): Promise<ClientChannel> {
  const proto = (y as unknown as { _protocol: PeerProtocol })._protocol;
  const directTcpip = proto.directTcpip.bind(proto);
  proto.directTcpip = (chan, _window, maxPacket, cfg) => directTcpip(chan, 0, maxPacket, cfg);
  try {
    const ch = await openDirect(y, exposure, 22);
    ch.on('error', () => {});
    return ch.resume();
  } finally {
    proto.directTcpip = directTcpip;
  }
}

/** A global request the relay refuses: once answered, it has handled everything `c` sent before it. */
function roundTrip(c: Client): Promise<void> {
  return new Promise((resolve) => c.forwardIn('not-in-lease', 22, () => resolve()));
}

describe('a connection the relay ends ends the bridges on both its sides at once', { timeout: 120_000 }, () => {
  const t = relayUnderTest();

  /**
   * X with two channels from Y (one whose data waits for Y's window, one plain); `ended` is the
   * peer the relay will end. Returns the channels of the other peer, and the order in which they
   * closed and the ended peer's connection closed.
   */
  async function stage(name: string) {
    const xs: ClientChannel[] = [];
    const x = await t.member(`x-${name}`, { grant: { kind: 'expose', exposure: name, port: 22 } });
    await exposeWriting(x.client, name, (ch) => xs.push(ch));
    const y = await t.member(`y-${name}`, { grant: { kind: 'open', exposure: name } });
    const ys = [await openStalled(y.client, name), await openDirect(y.client, name, 22)];
    ys[1]!.on('error', () => {}).resume();
    await roundTrip(x.client); // the relay holds what X wrote
    assert.equal(xs.length, 2);
    return { x, y, xs, ys };
  }

  /** Records, in order, each of `channels` closing and the connection of `leaseId` closing at the relay. */
  function order(channels: ClientChannel[], leaseId: string) {
    const events: string[] = [];
    const closed = channels.map((ch, i) => new Promise<void>((resolve) => ch.once('close', () => (events.push(`channel ${i}`), resolve()))));
    const connClosed = t.relay.logger.waitFor((l: LogLine) => l.msg === 'connection closed' && l.fields.leaseId === leaseId).then(() => void events.push('connection'));
    return { events, done: within(Promise.all([...closed, connClosed]), 20_000, 'the channels and the connection closed') };
  }

  async function revoke(leaseId: string, exp: number): Promise<void> {
    const from = t.relay.logger.lines.length;
    t.fc.revoke(leaseId, exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.reason === 'lease_revoked' && l.fields.leaseId === leaseId, 10_000, from);
  }

  it("Y's lease revoked: X sees its channels close before Y's connection closes", async () => {
    const { y, xs } = await stage('end-y');
    ignoreEverything(y.client);
    const o = order(xs, y.leaseId);
    await revoke(y.leaseId, y.exp);
    await o.done;
    assert.equal(o.events.indexOf('connection'), 2, o.events.join(', '));
  });

  it("X's lease revoked: Y sees its channels close before X's connection closes", async () => {
    const { x, ys } = await stage('end-x');
    ignoreEverything(x.client);
    const o = order(ys, x.leaseId);
    await revoke(x.leaseId, x.exp);
    await o.done;
    assert.equal(o.events.indexOf('connection'), 2, o.events.join(', '));
  });

  it("X's socket closes while its data waits for Y's window: Y's channels close", async () => {
    const { x, y, ys } = await stage('end-sock');
    const yClosed = Promise.all(ys.map((ch) => new Promise<void>((resolve) => ch.once('close', () => resolve()))));
    const from = t.relay.logger.lines.length;
    x.client.destroy();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === x.leaseId, 10_000, from);
    await roundTrip(y.client); // the relay sent what it had for Y before this answer
    await within(yClosed, 10_000, "Y's channels closed");
  });
  it("X closes its channel after its data and EOF, then its connection: Y still gets all of it once it grants window", async () => {
    const xs: ClientChannel[] = [];
    const x = await t.member('x-end-graceful', { grant: { kind: 'expose', exposure: 'end-graceful', port: 22 } });
    await exposeWriting(x.client, 'end-graceful', (ch) => xs.push(ch));
    const y = await t.member('y-end-graceful', { grant: { kind: 'open', exposure: 'end-graceful' } });
    const ych = await openStalled(y.client, 'end-graceful');
    await roundTrip(x.client);
    // X's data, EOF and CLOSE, as OpenSSH or paramiko send them, and then X hangs up.
    xs[0]!.end();
    xs[0]!.close();
    await roundTrip(x.client);
    const from = t.relay.logger.lines.length;
    x.client.end();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === x.leaseId, 10_000, from);
    let got = 0;
    ych.on('data', (d: Buffer) => (got += d.length));
    const ended = new Promise<void>((resolve) => ych.once('end', () => resolve()));
    const proto = (y.client as unknown as { _protocol: PeerProtocol })._protocol;
    proto.channelWindowAdjust((ych as unknown as { outgoing: { id: number } }).outgoing.id, 1 << 20);
    await within(ended, 10_000, "Y's channel ended");
    assert.equal(got, DATA.length);
    // X's connection reports what it carried after it closed too.
    const close = await within(connCloseOf(t.fc, x.leaseId), 10_000, "X's conn_close");
    assert.deepEqual([close.bytes_in, close.bytes_out], [DATA.length, 0]);
  });
});
