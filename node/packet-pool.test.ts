import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createPacketPool, POOLED_PACKET_BYTES, POOLED_PACKET_MIN, recycleWrites } from './packet-pool.js';
import { batchWrites } from './write-batching.js';

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
        // What the kernel took at once went back at once; the rest waits for its write.
        assert.equal(pool.free, a.writableLength === 0 ? 8 : 0);
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

  it('gives packets the kernel took back during the synchronous run that wrote them, so a burst reuses a few buffers; bytes intact, also corked in batches', async () => {
    for (const batched of [false, true]) {
      const pool = createPacketPool(128);
      const { a, b, close } = await socketPair();
      try {
        recycleWrites(a, pool);
        if (batched) batchWrites(a); // as in the relay: batching wraps the recycling
        const n = 64;
        const expected = Buffer.alloc(n * 30_000);
        for (let i = 0; i < n; i++) expected.fill(i + 1, i * 30_000, (i + 1) * 30_000);
        const arrived = readBytes(b, expected.length);
        // One synchronous run, as ssh2 forwarding a resumed channel's buffered window: each
        // packet is taken from the pool, filled and written before the next.
        for (let i = 0; i < n; i++) a.write(pool.take(30_000)!.fill(i + 1));
        assert.ok(pool.allocated < n / 2, `a burst of ${n} packets took ${pool.allocated} buffers`);
        assert.ok(pool.reused > 0);
        // A buffer given back before the kernel had its bytes would have been refilled by a later packet.
        assert.deepEqual(await arrived, expected);
        await new Promise((r) => setImmediate(r));
        assert.equal(pool.free, pool.allocated, 'every buffer is back once every write completed, none twice');
      } finally {
        close();
      }
    }
  });

  it('gives nothing back while the socket still holds it unsent (a slow peer), and everything once sent', async () => {
    const pool = createPacketPool(128);
    const { a, b, close } = await socketPair();
    try {
      recycleWrites(a, pool);
      b.pause();
      a.write(Buffer.alloc(8 * 1024 * 1024)); // fills the kernel's buffers: what follows waits in Node
      const packets = Array.from({ length: 16 }, (_, i) => pool.take(30_000)!.fill(i + 1));
      for (const p of packets) a.write(p);
      assert.ok(a.writableLength > 0);
      assert.equal(pool.free, 0, 'nothing is given back before its write completed');
      const drained = once(a, 'drain');
      const all = readBytes(b, 8 * 1024 * 1024 + 16 * 30_000);
      b.resume();
      const got = await all;
      await drained;
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(got.subarray(8 * 1024 * 1024), Buffer.concat(packets));
      assert.equal(pool.free, 16);
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
      const big = 8 * 1024 * 1024; // more than loopback takes at once (about 4 MB here), so what follows waits in Node
      a.write(Buffer.alloc(big));
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
