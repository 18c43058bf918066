import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createGcPacer } from '../../node/gc-pacer.js';
import { joinSocketAndChannel } from './pipe.js';

/** Two ends of one loopback TCP connection (allowHalfOpen, as the CLI's sockets). */
async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
  const [b] = await accepted;
  await once(a, 'connect');
  server.close();
  return [a, b];
}

/** Everything `sock` receives until EOF. */
async function readAll(sock: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  await once(sock, 'end');
  return Buffer.concat(chunks);
}

describe('joinSocketAndChannel', () => {
  it('counts every byte either way into the gc pacer, and the data arrives whole', async () => {
    // local peer <-> [socket | join | channel] <-> remote peer; a TCP socket stands in for the SSH channel.
    const [localPeer, socket] = await tcpPair();
    const [channel, remotePeer] = await tcpPair();
    let collections = 0;
    const pacer = createGcPacer(64 * 1024, () => collections++);
    const counted: number[] = [];
    const closed = new Promise<[number, number]>((resolve) =>
      joinSocketAndChannel(socket, channel, (up, down) => resolve([up, down]), {
        read: (n) => {
          counted.push(n);
          pacer.read(n);
        },
      }),
    );
    const up = Buffer.alloc(1_000_000, 1);
    const down = Buffer.alloc(300_000, 2);
    const gotUp = readAll(remotePeer);
    const gotDown = readAll(localPeer);
    localPeer.end(up);
    remotePeer.end(down);
    assert.deepEqual(await gotUp, up);
    assert.deepEqual(await gotDown, down);
    assert.deepEqual(await closed, [up.length, down.length]);
    const total = counted.reduce((a, b) => a + b, 0);
    assert.equal(total, up.length + down.length, 'both directions are counted, each byte once');
    assert.equal(pacer.collections, collections);
    // A collection per 64 KiB counted, each read adding at most 64 KiB past the mark.
    assert.ok(collections >= Math.floor(total / (2 * 64 * 1024)), `${collections} collections for ${total} bytes`);
  });
});
