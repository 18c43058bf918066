import type { Writable } from 'node:stream';

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
 */
export function holdWritesWhileSocketFull(channel: Writable, sock: Writable, limit = SOCKET_SEND_LIMIT): void {
  if (limit < sock.writableHighWaterMark) throw new RangeError(`limit ${limit} is below the socket's high-water mark`);
  const ch = channel as unknown as WritableInternals;
  const write = ch._write;
  ch._write = function (chunk, encoding, cb) {
    write.call(this, chunk, encoding, (err) => {
      if (err || sock.destroyed || sock.writableLength <= limit) return cb(err);
      whenDrained(sock, () => cb());
    });
  };
}

/** Channels of one connection waiting for its socket: one 'drain' and one 'close' listener per socket, however many channels wait. */
const waiting = new WeakMap<Writable, (() => void)[]>();

/** Calls `go` when `sock` drains, or closes (the channel's connection is going down then). */
export function whenDrained(sock: Writable, go: () => void): void {
  const queue = waiting.get(sock);
  if (queue) return void queue.push(go);
  const fresh = [go];
  waiting.set(sock, fresh);
  const release = () => {
    sock.off('drain', release);
    sock.off('close', release);
    waiting.delete(sock);
    for (const f of fresh) f();
  };
  sock.on('drain', release);
  sock.on('close', release);
}
