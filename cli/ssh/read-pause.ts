import type { Socket } from 'node:net';

/**
 * Unsent bytes in the SSH socket at which this side stops reading the relay. What the CLI's own
 * channels send stops at SOCKET_SEND_LIMIT (send-backpressure.ts, packet-reads.ts) plus one
 * chunk per busy channel, so a relay that reads keeps the CLI reading; a pause lasts only until
 * the socket drains.
 */
export const READ_PAUSE_LIMIT = 1024 * 1024;

/**
 * Stops reading `sock` (an ssh2 Client's socket to the relay) while it holds more than `limit`
 * bytes unsent, until it drains. ssh2 answers what the peer sends without looking at the
 * socket's backpressure: a global request or a channel request wanting a reply (REQUEST_FAILURE,
 * CHANNEL_FAILURE), a channel open of a type it refuses (OPEN_FAILURE). A relay that sent such
 * requests as fast as it could and never read made `tunnel expose` and `tunnel open` hold every
 * answer (about 290 MB of RSS in the 20 s before the keepalive gave up); one that also sent an
 * unasked REQUEST_SUCCESS now and then, which ssh2 takes as the keepalive's answer, grew them
 * without end. With reading stopped, what the relay sends is not read (its own socket backs
 * up), nothing answers the CLI's keepalives, and the connection ends as a relay that stopped
 * answering them (RelayTimings), holding at most `limit` plus the answers to one read.
 *
 * Watches every write ssh2 makes (its onWrite calls `sock.write`, as the instance's property)
 * rather than the reads: a write is where the queue grows. `limit` must be above the socket's
 * high-water mark, so that the write that went over it returned false and a 'drain' follows.
 */
export function pauseReadsWhileUnsent(sock: Socket, limit = READ_PAUSE_LIMIT): void {
  if (limit < sock.writableHighWaterMark) throw new RangeError(`limit ${limit} is below the socket's high-water mark`);
  const write = sock.write;
  let paused = false;
  const resume = () => {
    paused = false;
    if (!sock.destroyed) sock.resume();
  };
  sock.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    const ok = write.apply(this, args);
    if (!paused && this.writableLength > limit) {
      paused = true;
      this.pause();
      this.once('drain', resume);
    }
    return ok;
  } as Socket['write'];
}
