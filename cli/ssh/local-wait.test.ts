/**
 * localWait (local-wait.ts) on real loopback connections accepted as `tunnel open --listen`
 * accepts them (allowHalfOpen, pauseOnConnect): a client that goes away while its connection
 * waits is noticed at once; one that sent its request and shut down its write side is not taken
 * for gone, and once joined to a real ssh2 channel (forwardOut, joinSocketAndChannel) its request
 * and end reach the far side in order, and the answer reaches it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { forwardOut } from '../commands/open.js';
import { clientOfFakeRelay } from '../testing/fake-relay.js';
import { LocalClientGone, localWait } from './local-wait.js';
import { joinSocketAndChannel } from './pipe.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A local connection as `tunnel open --listen` accepts it: [the client's side, the accepted socket]. */
async function accepted(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const connection = once(server, 'connection') as Promise<[Socket]>;
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
  client.on('error', () => {});
  await once(client, 'connect');
  const [sock] = await connection;
  sock.on('error', () => {}); // as serveLocal does
  return [client, sock];
}

/**
 * Resolves once `cond()` holds, checked after each turn of the event loop: for what Node emits no
 * event for (a FIN behind buffered data; data read into a paused socket's buffer).
 */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A client not noticed leaves the test waiting for the abort: it fails then, rather than hang. */
const HANG = { timeout: 20_000 };

const readEnded = (s: Socket) => (s as unknown as { _readableState: { ended: boolean } })._readableState.ended;

/** The watch's listeners are gone: the socket has only the ones it had before. */
function noListenersLeft(sock: Socket, before: { end: number; close: number }): void {
  assert.deepEqual({ end: sock.listenerCount('end'), close: sock.listenerCount('close') }, before);
}

describe('localWait: a waiting local connection whose client goes away', () => {
  const goneCases: [string, (client: Socket) => void, 'before' | 'after'][] = [
    ['closes without sending (FIN), while watched', (c) => c.end(), 'after'],
    ['closed without sending before the watch began', (c) => c.end(), 'before'],
    ['resets (RST), while watched', (c) => c.resetAndDestroy(), 'after'],
    ['reset before the watch began', (c) => c.resetAndDestroy(), 'before'],
  ];
  for (const [what, leave, when] of goneCases) {
    it(`${what}: the signal aborts at once, the listeners go`, HANG, async () => {
      const [client, sock] = await accepted();
      const listeners = { end: sock.listenerCount('end'), close: sock.listenerCount('close') };
      const wait = localWait(sock);
      const aborted = once(wait.signal, 'abort');
      if (when === 'before') {
        leave(client);
        if (!client.destroyed) await once(client, 'finish');
        wait.watch();
      } else {
        wait.watch();
        leave(client);
      }
      await aborted;
      assert.ok(wait.signal.reason instanceof LocalClientGone, String(wait.signal.reason));
      noListenersLeft(sock, listeners);
      sock.destroy();
      client.destroy();
    });
  }

  it('sends data and then resets, while watched: the signal aborts', HANG, async () => {
    const [client, sock] = await accepted();
    const wait = localWait(sock);
    const aborted = once(wait.signal, 'abort');
    wait.watch();
    client.write('half a request');
    await until(() => sock.readableLength > 0, 'the data read into the paused socket');
    client.resetAndDestroy();
    await aborted;
    assert.ok(wait.signal.reason instanceof LocalClientGone);
  });

  it('not watched, nothing is read: the socket stays as accepted (packet reads stay possible)', async () => {
    const [client, sock] = await accepted();
    const wait = localWait(sock);
    client.end('hello');
    await once(client, 'finish');
    // A turn for Node to have read it, were it reading.
    await new Promise((r) => setImmediate(r));
    assert.equal(sock.bytesRead, 0);
    assert.equal(sock.readableLength, 0);
    assert.equal(wait.signal.aborted, false);
    sock.destroy();
    client.destroy();
  });
});

describe('localWait: a client that sends its request and shuts down its write side while waiting', () => {
  it('is not taken for gone; joined, its request and end reach the far side in order and the answer comes back', HANG, async () => {
    // The far side: a channel that answers once the request has ended.
    let request = '';
    const { client: ssh, close } = await clientOfFakeRelay((accept) => {
      const ch = accept();
      ch.on('data', (d: Buffer) => (request += d.toString()));
      ch.on('end', () => ch.end(`answer to ${request}`));
    });
    after(close);

    const [client, sock] = await accepted();
    const listeners = { end: sock.listenerCount('end'), close: sock.listenerCount('close') };
    const wait = localWait(sock);
    wait.watch();
    const answer: Buffer[] = [];
    client.on('data', (d: Buffer) => answer.push(d));
    const big = 'x'.repeat(5000);
    client.write('GET ');
    client.end(big);
    // Node emits nothing for a FIN behind data it buffered: its stream state says when it came.
    await until(() => readEnded(sock), 'the FIN read');
    assert.equal(sock.readableLength, 4 + big.length);
    assert.equal(wait.signal.aborted, false, 'a half-closed client with its request sent is no gone client');
    wait.release();
    noListenersLeft(sock, listeners);

    const ch = await forwardOut(ssh, 0, { host: 'svc', port: 1, label: 'svc:1' }, () => {});
    const closed = new Promise<[number, number]>((resolve) => joinSocketAndChannel(sock, ch, (up, down) => resolve([up, down]), { read: () => {} }));
    await once(client, 'end');
    assert.equal(request, `GET ${big}`);
    assert.equal(Buffer.concat(answer).toString(), `answer to GET ${big}`);
    client.end();
    const [up, down] = await closed;
    assert.equal(up, 4 + big.length);
    assert.equal(down, `answer to GET ${big}`.length);
    assert.equal(wait.signal.aborted, false);
  });
});

describe('localWait: a client that trickles its request a byte at a time while waiting', () => {
  it('does not make this process hold thousands of separate reads; joined, every byte reaches the far side in order', HANG, async () => {
    let request = Buffer.alloc(0);
    const { client: ssh, close } = await clientOfFakeRelay((accept) => {
      const ch = accept();
      ch.on('data', (d: Buffer) => (request = Buffer.concat([request, d])));
      ch.on('end', () => ch.end('done'));
    });
    after(close);

    const [client, sock] = await accepted();
    // A failed assertion leaves no connection open (node --test would wait for it).
    after(() => {
      client.destroy();
      sock.destroy();
    });
    client.setNoDelay(true);
    const wait = localWait(sock);
    wait.watch();
    // Each byte is sent once the one before was read (or reading stopped): one read, one Buffer
    // in the paused socket, each with its own backing store (about 0.5 KB of memory per read
    // here). Reading on to the highWaterMark (16 KiB) would have been 16384 of them: about 8 MB
    // held for one waiting connection that sent 16 KiB.
    const sent = Buffer.from(Array.from({ length: 2000 }, (_, i) => i % 251));
    const reading = () => (sock as unknown as { _handle: { reading: boolean } })._handle.reading;
    for (let i = 0; i < sent.length; i++) {
      client.write(sent.subarray(i, i + 1));
      await until(() => sock.readableLength === i + 1 || !reading(), `byte ${i} read, or reading stopped`);
    }
    assert.ok(sock.readableLength <= 64, `the waiting socket holds ${sock.readableLength} separate one-byte reads`);
    assert.equal(wait.signal.aborted, false);
    client.end();
    wait.release();

    const ch = await forwardOut(ssh, 0, { host: 'svc', port: 1, label: 'svc:1' }, () => {});
    const answer: Buffer[] = [];
    client.on('data', (d: Buffer) => answer.push(d));
    const closed = new Promise<[number, number]>((resolve) => joinSocketAndChannel(sock, ch, (up, down) => resolve([up, down]), { read: () => {} }));
    await once(client, 'end');
    assert.ok(request.equals(sent), `the far side got ${request.length} bytes, not the ${sent.length} sent in order`);
    assert.equal(Buffer.concat(answer).toString(), 'done');
    client.end();
    assert.deepEqual(await closed, [sent.length, 'done'.length]);
  });
});
