import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SendBudget, type SendBudgetOptions } from './send-budget.js';

/** A loopback TCP pair whose server side does not read until told to. */
async function pair(server: Server): Promise<{ client: Socket; peer: Socket }> {
  const peer = new Promise<Socket>((resolve) => server.once('connection', (s: Socket) => resolve(s.pause())));
  const client = await new Promise<Socket>((resolve) => {
    const c = connect((server.address() as AddressInfo).port, '127.0.0.1', () => resolve(c));
  });
  return { client, peer: await peer };
}

/** Writes until Node's own write queue holds at least `bytes` (the kernel buffers fill first). */
async function fill(sock: Socket, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(256 * 1024);
  while (sock.writableLength < bytes) {
    sock.write(chunk);
    await new Promise((r) => setImmediate(r));
  }
}

describe('SendBudget', () => {
  let server: Server;
  before(async () => {
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(() => server.close());

  const budget = (socket: Socket, o: Partial<SendBudgetOptions> = {}) => {
    const events: string[] = [];
    const b = new SendBudget({
      socket,
      held: () => 0,
      limit: 1 << 20,
      stallMs: 60_000,
      onOver: () => events.push('over'),
      onReadPaused: () => events.push('read-paused'),
      onStall: () => events.push('stall'),
      onPeak: () => {},
      wrap: (_where, fn) => (...args) => void fn(...args),
      ...o,
    });
    return { b, events };
  };

  it('is over at the limit, holds waiters until the socket drains, and resumes them', async () => {
    const { client, peer } = await pair(server);
    const { b, events } = budget(client);
    assert.equal(b.update(), false);
    await fill(client, 1 << 20);
    assert.equal(b.update(), true);
    assert.equal(b.over, true);
    assert.ok(b.peak >= 1 << 20);
    let opened = false;
    b.whenOpen(() => (opened = true));
    assert.equal(opened, false);
    const drained = new Promise((r) => client.once('drain', r));
    peer.resume();
    await drained;
    assert.equal(opened, true, 'the waiter ran once the peer read');
    assert.equal(b.over, false);
    assert.deepEqual(events, ['over']);
    b.close();
    client.destroy();
    peer.destroy();
  });

  it('counts what ssh2 holds back during a key exchange, and stops reading the peer at twice the limit', async () => {
    const { client, peer } = await pair(server);
    let held = 0;
    const { b, events } = budget(client, { held: () => held, limit: 64 * 1024 });
    held = 64 * 1024;
    assert.equal(b.update(), true, 'the key exchange queue alone puts it over');
    assert.equal(client.isPaused(), false, 'below twice the limit the peer is still read');
    held = 128 * 1024;
    b.update();
    assert.equal(client.isPaused(), true);
    held = 0;
    b.handshake();
    assert.equal(b.over, false);
    assert.equal(client.isPaused(), false, 'reading resumes once under the limit');
    assert.deepEqual(events, ['over', 'read-paused']);
    b.close();
    client.destroy();
    peer.destroy();
  });

  it('disconnects a peer that stays over the limit and takes nothing; progress re-arms', async () => {
    const { client, peer } = await pair(server);
    let stalled!: () => void;
    const stall = new Promise<void>((r) => (stalled = r));
    const { b } = budget(client, { stallMs: 200, onStall: () => stalled() });
    await fill(client, 1 << 20);
    b.update();
    await stall;
    assert.equal(b.over, true);
    b.close();
    client.destroy();
    peer.destroy();
  });
});
