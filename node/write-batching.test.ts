import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { BATCH_MAX_BYTES, batchWrites } from './write-batching.js';

describe('batchWrites', () => {
  it('sends the packets written in one tick with one writev, in order, counted in writableLength meanwhile', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const sock = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
    await once(sock, 'connect');
    const [peer] = await accepted;
    const got: Buffer[] = [];
    peer.on('data', (d: Buffer) => got.push(d));

    batchWrites(sock);
    const internals = sock as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
    let writevs = 0;
    let writes = 0;
    const writev = internals._writev.bind(sock);
    const write = internals._write.bind(sock);
    internals._writev = (...a: unknown[]) => (writevs++, writev(...a));
    internals._write = (...a: unknown[]) => (writes++, write(...a));

    const packets = Array.from({ length: 3 }, (_, i) => Buffer.alloc(32 * 1024, i));
    for (const p of packets) sock.write(p);
    assert.equal(sock.writableLength, 3 * 32 * 1024, 'held (corked) bytes count as buffered, for the send budget');
    assert.equal(writevs + writes, 0, 'nothing written yet within the tick');
    const total = 3 * 32 * 1024;
    while (got.reduce((n, b) => n + b.length, 0) < total) await once(peer, 'data');
    assert.equal(writevs, 1, 'one writev');
    assert.equal(writes, 0);
    assert.deepEqual(Buffer.concat(got), Buffer.concat(packets), 'every byte, in order');

    // The next tick's writes go out on their own again.
    sock.write(Buffer.from('later'));
    while (!Buffer.concat(got).subarray(total).equals(Buffer.from('later'))) await once(peer, 'data');

    // A burst bigger than BATCH_MAX_BYTES is not held back: it is flushed once the batch is full.
    const burst = Array.from({ length: 64 }, (_, i) => Buffer.alloc(32 * 1024, i));
    let maxHeld = 0;
    writevs = 0;
    for (const p of burst) {
      sock.write(p);
      if (writevs === 0) maxHeld = Math.max(maxHeld, sock.writableLength);
    }
    assert.ok(writevs >= 1, 'flushed within the tick');
    assert.ok(maxHeld <= BATCH_MAX_BYTES, `held at most one batch before the first flush (${maxHeld})`);
    const all = total + 5 + 64 * 32 * 1024;
    while (got.reduce((n, b) => n + b.length, 0) < all) await once(peer, 'data');
    assert.deepEqual(Buffer.concat(got).subarray(total + 5), Buffer.concat(burst), 'the burst arrived whole, in order');
    sock.destroy();
    peer.destroy();
    server.close();
  });
});
