import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { MAX_READ_BYTES, startDelayLine, type DelayLine } from './delay-line.js';
import { startDelayLineProcess } from './delay-line-process.js';
import { digestUntilEnd } from '../../test/harness/streams.js';

const servers: Server[] = [];
const lines: DelayLine[] = [];
after(async () => {
  await Promise.all(lines.map((l) => l.close()));
  for (const s of servers) s.close();
});

async function listen(onConn: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, onConn);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function line(targetPort: number, oneWayMs: number, maxQueuedBytes?: number): Promise<DelayLine> {
  const l = await startDelayLine({ targetPort, oneWayMs, ...(maxQueuedBytes ? { maxQueuedBytes } : {}) });
  lines.push(l);
  return l;
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(s, 'connect');
  return s;
}

/** Writes `data` in uneven pieces with backpressure, then half-closes. */
async function send(s: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; ) {
    const n = Math.min(data.length - off, 1 + ((off * 7919) % 100_000));
    if (!s.write(data.subarray(off, off + n))) await once(s, 'drain');
    off += n;
  }
  s.end();
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('bench delay line (TCP proxy that holds each chunk)', () => {
  it('delays each direction by at least oneWayMs (a byte never arrives early)', async () => {
    const ONE_WAY = 80;
    const arrivals: number[] = [];
    const port = await listen((s) => {
      s.on('data', (d: Buffer) => {
        arrivals.push(performance.now());
        s.write(d); // echo
      });
      s.on('end', () => s.end());
    });
    const l = await line(port, ONE_WAY);
    const c = await dial(l.port);
    for (let i = 0; i < 5; i++) {
      const sent = performance.now();
      c.write(Buffer.from([i]));
      const [echo] = (await once(c, 'data')) as [Buffer];
      const back = performance.now();
      assert.deepEqual([...echo], [i]);
      assert.ok(arrivals[i]! - sent >= ONE_WAY, `one way: ${arrivals[i]! - sent} ms`);
      assert.ok(back - sent >= 2 * ONE_WAY, `round trip: ${back - sent} ms`);
    }
    c.end();
    await once(c, 'close');
  });

  it('moves 32 MiB of random data each way at once without dropping or reordering, within its memory bound', async () => {
    const SIZE = 32 * 1024 * 1024;
    const MAX_QUEUED = 1024 * 1024; // well below what is sent: the bound and backpressure are exercised
    const up = randomBytes(SIZE);
    const down = randomBytes(SIZE);
    let serverGot: Promise<{ sha: string; bytes: number }> | undefined;
    const port = await listen((s) => {
      serverGot = digestUntilEnd(s);
      void send(s, down);
    });
    const l = await line(port, 5, MAX_QUEUED);
    const c = await dial(l.port);
    const clientGot = digestUntilEnd(c);
    await send(c, up);
    const [atClient, atServer] = await Promise.all([clientGot, (async () => {
      while (!serverGot) await new Promise((r) => setImmediate(r));
      return serverGot;
    })()]);
    assert.deepEqual(atServer, { sha: sha(up), bytes: SIZE });
    assert.deepEqual(atClient, { sha: sha(down), bytes: SIZE });
    assert.ok(l.peakQueuedBytes() <= MAX_QUEUED + MAX_READ_BYTES, `held ${l.peakQueuedBytes()} bytes in one direction`);
    assert.ok(l.peakQueuedBytes() >= MAX_QUEUED / 2, 'the bound was reached (the test exercised backpressure)');
  });

  it('passes a half-close on: the reply after EOF arrives, then both sides close and the pair is gone', async () => {
    const port = await listen((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => {
        // Only after the client's EOF: reply with what arrived, reversed, then close.
        s.end(Buffer.concat(chunks).reverse());
      });
    });
    const l = await line(port, 20);
    const c = await dial(l.port);
    const got = digestUntilEnd(c);
    c.end(Buffer.from('hello, half-closed world'));
    const reply = await got;
    assert.equal(reply.sha, sha(Buffer.from('dlrow desolc-flah ,olleh')));
    await once(c, 'close');
    const deadline = Date.now() + 5_000;
    while (l.connections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(l.connections(), 0);
  });

  it('a reset on one side closes the other', async () => {
    let upstream: Socket | undefined;
    const port = await listen((s) => {
      upstream = s;
    });
    const l = await line(port, 10);
    const c = await dial(l.port);
    c.on('error', () => {});
    c.write('x');
    while (!upstream) await new Promise((r) => setTimeout(r, 5));
    upstream.resetAndDestroy();
    // The line closes the client's side at once (no delayed EOF after a reset).
    await new Promise((resolve) => {
      c.once('end', resolve);
      c.once('close', resolve);
    });
    c.destroy();
    const deadline = Date.now() + 5_000;
    while (l.connections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(l.connections(), 0);
  });
});

describe('bench delay line in its own process (what bench:e2e runs)', () => {
  it('holds each direction for the delay it was set to, and moves 16 MiB each way intact', async () => {
    const SIZE = 16 * 1024 * 1024;
    const up = randomBytes(SIZE);
    const down = randomBytes(SIZE);
    let serverGot: Promise<{ sha: string; bytes: number }> | undefined;
    const arrivals: number[] = [];
    let accepted = 0;
    const port = await listen((s) => {
      if (accepted++ === 0) {
        // The first connection is the probe: echo.
        s.on('data', (d: Buffer) => {
          arrivals.push(performance.now());
          s.write(d);
        });
        s.on('end', () => s.end());
        return;
      }
      serverGot = digestUntilEnd(s);
      void send(s, down);
    });
    const l = await startDelayLineProcess({ targetPort: port, oneWayMs: 0 });
    try {
      assert.equal(l.pid > 0 && l.pid !== process.pid, true, 'a process of its own');
      await l.setOneWayMs(60); // applies from the next chunk on
      const probe = await dial(l.port);
      const sent = performance.now();
      probe.write(Buffer.from([0x21]));
      const [echo] = (await once(probe, 'data')) as [Buffer];
      const back = performance.now();
      assert.deepEqual([...echo], [0x21]);
      assert.ok(arrivals[0]! - sent >= 60, `one way: ${arrivals[0]! - sent} ms`);
      assert.ok(back - sent >= 120, `round trip: ${back - sent} ms`);
      const probeClosed = once(probe, 'close');
      probe.end();
      const c = await dial(l.port);
      const closed = once(c, 'close');
      const clientGot = digestUntilEnd(c);
      await send(c, up);
      const atClient = await clientGot;
      while (!serverGot) await new Promise((r) => setImmediate(r));
      assert.deepEqual(await serverGot, { sha: sha(up), bytes: SIZE });
      assert.deepEqual(atClient, { sha: sha(down), bytes: SIZE });
      await Promise.all([closed, probeClosed]);
      const deadline = Date.now() + 5_000;
      while ((await l.stats()).connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await l.stats()).connections, 0, 'the pair is gone after both sides closed');
    } finally {
      await l.close();
    }
    assert.throws(() => process.kill(l.pid, 0), 'the child exited on close');
  });
});
