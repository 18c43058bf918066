/**
 * Traffic for the relay benchmark: X's service (greets every connection with one byte at once,
 * then counts what it receives) and Y's side (connect-to-first-byte probes, saturated pushes).
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { moveToOnread } from '../../cli/ssh/packet-reads.js';

const CHUNK = Buffer.alloc(256 * 1024, 0x5a);
/** What the service reads goes here and is dropped (see startService). */
const SINK = Buffer.allocUnsafeSlow(1024 * 1024);

export interface Service {
  port: number;
  /** Bytes received so far, over all connections. */
  received(): number;
  /** Resolves once `received()` reached `total`; rejects after `timeoutMs`. */
  waitForBytes(total: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** X's service on 127.0.0.1: writes one byte on accept (TCP_NODELAY), counts everything it reads (and drops it). */
export async function startService(): Promise<Service> {
  let received = 0;
  const waiters = new Set<{ total: number; resolve: () => void }>();
  const sockets = new Set<Socket>();
  const count = (n: number): boolean => {
    received += n;
    for (const w of waiters) if (received >= w.total) w.resolve();
    return true;
  };
  const server = createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
    // What it receives is only counted: every connection reads into one buffer (onread), with
    // no Buffer allocated per read, so the sink costs the machine less of what the path needs.
    const sock = moveToOnread(accepted, { buffer: SINK, callback: count }, true);
    sock.setNoDelay(true);
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.write('!');
    sock.on('end', () => sock.end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    waitForBytes: (total, timeoutMs) =>
      new Promise((resolve, reject) => {
        if (received >= total) return resolve();
        const w = {
          total,
          resolve: () => {
            clearTimeout(t);
            waiters.delete(w);
            resolve();
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`service received ${received} of ${total} bytes within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Connects to `port` and resolves with the socket once the service's greeting byte arrived. */
export function openStream(port: number, timeoutMs = 10_000): Promise<{ sock: Socket; firstByteMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no first byte from port ${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.once('error', fail);
    sock.once('close', () => fail(new Error(`port ${port} closed before the first byte`)));
    sock.once('data', () => {
      const firstByteMs = performance.now() - t0;
      clearTimeout(timer);
      sock.removeAllListeners('close');
      sock.removeAllListeners('error');
      sock.on('error', () => {});
      sock.on('data', () => {});
      resolve({ sock, firstByteMs });
    });
  });
}

/** Writes `bytes` with backpressure, then half-closes. */
export async function pump(sock: Socket, bytes: number): Promise<void> {
  let left = bytes;
  while (left > 0) {
    const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
    left -= chunk.length;
    if (!sock.write(chunk)) await once(sock, 'drain');
  }
  sock.end();
}

/** Connect-to-first-byte of `n` sequential connections, ms, sorted. */
export async function firstByteLatencies(port: number, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const { sock, firstByteMs } = await openStream(port);
    out.push(firstByteMs);
    sock.destroy();
  }
  return out.sort((a, b) => a - b);
}

/** Waits until a connection to `port` gets the service's greeting (the whole path is up). Bounded. */
export async function waitForPath(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const { sock } = await openStream(port, 2000);
      sock.destroy();
      return;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`path to port ${port} not up within ${timeoutMs} ms: ${String(last)}`);
}

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}
