import type { EventEmitter } from 'node:events';
import type { Duplex, Writable } from 'node:stream';
import { channelConnection, channelSocket, keyExchangeQueue } from '../../node/ssh2-internals.js';

/** Bytes the SSH socket may hold unsent before a channel's writes wait for it to drain. */
export const SOCKET_SEND_LIMIT = 256 * 1024;

interface WritableInternals {
  _write(chunk: unknown, encoding: BufferEncoding, cb: (err?: Error | null) => void): void;
}

/**
 * ssh2 writes each packet to the socket as soon as the peer's window allows and ignores the
 * socket's backpressure (Channel#_write calls back once the packets are handed over), so a
 * `tunnel open` pushing a stream held megabytes of encrypted packets in its SSH socket's write
 * queue (1.7 MB on average, up to 8 MB, on loopback in bench:e2e), long enough to outlive two
 * scavenges: V8 promoted them, and their off-heap memory counted against the old generation's
 * limit until mark-compacts of the whole heap (about 40 per 512 MiB) freed them. This holds the
 * channel's write callback while `sock` holds more than `limit` bytes unsent, until it drains:
 * the next chunk then waits in the local socket's kernel buffer instead (pipe() backpressure).
 * Nothing changes on the wire: the same packets, the same window accounting (ssh2 has already
 * sent and counted the chunk when its callback comes), the same key-exchange queueing (packets
 * ssh2 queues during a re-key are not in the socket yet). `limit` must be at least the
 * socket's writableHighWaterMark, so that a queue above it always ends in 'drain'.
 *
 * `held` counts what ssh2 holds outside the socket: the packets it queues while a key exchange
 * is unfinished (node/ssh2-internals.ts keyExchangeQueue). Without it a relay that granted a
 * huge window and started a re-key it never finished made the CLI queue everything its local
 * peer sent (650 MB in the 20 s before the keepalive gave up). A write waiting on held bytes is
 * released when the key exchange finished (holdChannelWrites), by 'drain', or by the socket's
 * close, and checks again.
 */
export function holdWritesWhileSocketFull(channel: Writable, sock: Writable, limit = SOCKET_SEND_LIMIT, held: () => number = () => 0): void {
  if (limit < sock.writableHighWaterMark) throw new RangeError(`limit ${limit} is below the socket's high-water mark`);
  const ch = channel as unknown as WritableInternals;
  const write = ch._write;
  ch._write = function (chunk, encoding, cb) {
    write.call(this, chunk, encoding, (err) => {
      if (err) return cb(err);
      const go = () => {
        if (sock.destroyed || sock.writableLength + held() <= limit) cb();
        else whenDrained(sock, go);
      };
      go();
    });
  };
}

/**
 * holdWritesWhileSocketFull for an ssh2 channel: its connection's socket, and the key exchange
 * queue of its connection. False (nothing held) for a stream that is not an ssh2 channel.
 */
export function holdChannelWrites(channel: Duplex): boolean {
  const sock = channelSocket(channel);
  const conn = channelConnection(channel);
  if (!sock || !conn) return false;
  holdWritesWhileSocketFull(channel, sock, SOCKET_SEND_LIMIT, keyExchangeQueue(conn));
  // A finished key exchange flushed the queue into the socket (ssh2 emits 'handshake' after it):
  // packets the kernel took at once leave no 'drain' behind, so the waiters are woken here.
  if (!watched.has(conn)) {
    watched.add(conn);
    (conn as unknown as EventEmitter).on('handshake', () => wakeWaiters(sock));
  }
  return true;
}

/** Channels of one connection waiting for its socket: one 'drain' and one 'close' listener per socket, however many channels wait. */
const waiting = new WeakMap<Writable, { fns: (() => void)[]; release: () => void }>();

/** Calls `go` when `sock` drains, or closes (the channel's connection is going down then), or wakeWaiters(sock) is called. */
export function whenDrained(sock: Writable, go: () => void): void {
  const queue = waiting.get(sock);
  if (queue) return void queue.fns.push(go);
  const fresh = [go];
  const release = () => {
    sock.off('drain', release);
    sock.off('close', release);
    waiting.delete(sock);
    for (const f of fresh) f();
  };
  waiting.set(sock, { fns: fresh, release });
  sock.on('drain', release);
  sock.on('close', release);
}

/** Calls what waits on `sock` now (each checks again, and waits again if it must). */
function wakeWaiters(sock: Writable): void {
  waiting.get(sock)?.release();
}

/** Connections whose key exchanges already wake their socket's waiters. */
const watched = new WeakSet<object>();
