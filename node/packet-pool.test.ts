import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createPacketPool, POOLED_PACKET_BYTES, POOLED_PACKET_MIN, recycleWrites } from './packet-pool.js';

async function socketPair(): Promise<{ a: Socket; b: Socket; close(): void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect(port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = await accepted;
  return {
    a,
    b,
    close() {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

/** Reads `n` bytes from `s`. */
function readBytes(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        s.off('data', onData);
        resolve(Buffer.concat(parts));
      }
    };
    s.on('data', onData);
  });
}

describe('packet pool', () => {
  it('serves sizes above Node’s own pool up to one 32 KiB data packet, and reuses what is given back, keeping at most maxFree', () => {
    const pool = createPacketPool(2);
    assert.equal(pool.take(POOLED_PACKET_MIN), undefined, 'small packets come from Node’s shared pool');
    assert.equal(pool.take(POOLED_PACKET_BYTES + 1), undefined, 'larger packets are allocated as before');
    const p1 = pool.take(POOLED_PACKET_BYTES)!;
    const p2 = pool.take(5000)!;
    const p3 = pool.take(32_800)!;
    assert.equal(p1.length, POOLED_PACKET_BYTES);
    assert.equal(p2.length, 5000);
    assert.equal(pool.allocated, 3);
    assert.ok(pool.owns(p1.buffer) && pool.owns(p2.buffer) && !pool.owns(Buffer.alloc(5000).buffer));
    pool.give(p1.buffer);
    pool.give(p2.buffer);
    pool.give(p3.buffer);
    pool.give(Buffer.alloc(POOLED_PACKET_BYTES).buffer);
    assert.equal(pool.free, 2, 'at most maxFree wait, and only its own');
    const again = pool.take(6000)!;
    assert.ok(again.buffer === p2.buffer || again.buffer === p1.buffer);
    assert.equal(pool.reused, 1);
    assert.equal(pool.allocated, 3);
  });

  it('gives a pooled packet back once its socket write has completed, bytes intact; leaves other writes alone', async () => {
    const pool = createPacketPool(16);
    const { a, b, close } = await socketPair();
    try {
      recycleWrites(a, pool);
      const packets = Array.from({ length: 8 }, (_, i) => pool.take(30_000)!.fill(i + 1));
      const other = Buffer.alloc(30_000, 0xee);
      const expected = Buffer.concat([...packets, other]);
      const arrived = readBytes(b, expected.length);
      const ownCallback = new Promise<void>((resolve) => {
        for (const p of packets) a.write(p);
        assert.equal(pool.free, 0, 'nothing is given back before its write completed');
        a.write(other, () => resolve());
      });
      await ownCallback;
      assert.deepEqual(await arrived, expected);
      assert.equal(pool.free, 8, 'each written packet went back');
      assert.equal(pool.owns(other.buffer), false);
      const next = pool.take(30_000)!;
      assert.ok(packets.some((p) => p.buffer === next.buffer), 'the next packet is built in one written before');
    } finally {
      close();
    }
  });

  it('gives nothing back from a socket whose writes failed', async () => {
    const pool = createPacketPool(16);
    const { a, b, close } = await socketPair();
    try {
      recycleWrites(a, pool);
      b.pause(); // the peer reads nothing: the writes stay queued
      a.on('error', () => {});
      const big = 4 * 1024 * 1024;
      a.write(Buffer.alloc(big)); // fills the kernel's buffers so that what follows waits in Node
      for (let i = 0; i < 8; i++) a.write(pool.take(30_000)!);
      const closed = once(a, 'close');
      a.destroy();
      await closed;
      await new Promise((r) => setImmediate(r));
      assert.equal(pool.free, 0);
      // A write after the failure fails too, and gives nothing back.
      a.write(pool.take(30_000)!);
      await new Promise((r) => setImmediate(r));
      assert.equal(pool.free, 0);
    } finally {
      close();
    }
  });
});
