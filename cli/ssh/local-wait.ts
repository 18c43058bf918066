import { Socket } from 'node:net';

/** The reason a LocalWait's signal aborts with: the local client went away while its connection waited. */
export class LocalClientGone extends Error {
  constructor() {
    super('the local client went away while its connection waited');
  }
}

export interface LocalWait {
  /** Aborts (with a LocalClientGone) once the client is seen to have gone, while watched. */
  readonly signal: AbortSignal;
  /** Starts watching (reads the socket, see localWait); again: nothing more. */
  watch(): void;
  /** Stops watching (its listeners removed): the socket is the caller's again. */
  release(): void;
}

/**
 * Notices that the client of a local connection of `tunnel open --listen` went away while the
 * connection waits for the relay, so that it stops waiting at once: its place among the
 * MAX_WAITING waiters (lease-session.ts) is freed, its timers cleared, and no channel is opened
 * for it (cli/commands/open.ts serveLocal).
 *
 * Such a socket is accepted with pauseOnConnect and not read (its first reads then go straight
 * into SSH packets, packet-reads.ts), and Node sees nothing of a socket it does not read: on
 * Node 20, with the peer's FIN (a connect-and-close) or its RST, a paused socket emits no event
 * and stays `destroyed: false`, `readableEnded: false`, however long; a write to it is what
 * fails (EPIPE, ECONNRESET), and writing to the client is not ours to do. net has no peek either.
 * So watch() makes Node read the socket (`read(0)`: reading starts, nothing is consumed), and:
 * - FIN with nothing sent (also one that came before watch()): 'end' at once (paused mode emits
 *   'end' only when nothing is buffered). Gone: a client that shut down its side without
 *   sending a byte while waiting is taken for one that went away (a client that half-closes
 *   right away to only listen cannot be told from it).
 * - RST: 'error' (ECONNRESET) and 'close'. Gone.
 * - Data, then FIN: no event. The data waits in the socket's readable buffer, in order, and the
 *   FIN after it: a client that sent its request and shut down its write side (allowHalfOpen)
 *   and waits for the answer. It stays; once the channel is open the join pipes the buffer and
 *   then the end (pipe.ts). A client that sent data and then closed looks just the same (both
 *   send a FIN); only a write to it would tell, so it waits as before.
 * - Data, then RST: 'error' and 'close' if the data had been read before the RST came (Linux
 *   hands over data still unread, then an end, as for a FIN).
 * What this costs: Node reads at most its highWaterMark (16 KiB on Node 20) ahead, plus one read
 * (up to 64 KiB), and at most MAX_WATCHED_READS reads, and stops: up to about 80 KiB per waiting
 * connection is held in this process instead of the kernel's socket buffer. And a socket that has been read cannot move to packet
 * reads: a connection that waited goes through the stream path (socket.pipe into the channel) for
 * its life. Hence watch() is called only when a connection really waits (no relay connection, or
 * a pause before trying an offline exposure or a busy relay again), never on the way of a
 * connection that is opened at once. A local client that stays connected still keeps its place
 * for up to the whole wait, as before (MAX_WAITING is the bound for those).
 */
/**
 * Reads a watched socket may make before reading stops. Node holds each read as its own Buffer
 * (about 0.5 KB of memory besides the bytes) and reads on to the highWaterMark in bytes, not in
 * reads: a client sending a byte at a time made this process hold 16384 Buffers, about 8 MB, for
 * one waiting connection that sent 16 KiB. A client that sent this much is one that sends its
 * request; the rest of it waits in the kernel, as for a connection never watched. Stopping sets
 * the readable state's highWaterMark to 0 (no read is started while anything is buffered, and
 * push() tells the socket to stop); release() puts it back, and the join's reads then go on.
 */
export const MAX_WATCHED_READS = 32;

export function localWait(sock: Socket): LocalWait {
  const ac = new AbortController();
  let watching = false;
  const state = (sock as unknown as { _readableState: { highWaterMark: number } })._readableState;
  const highWaterMark = state.highWaterMark;
  let reads = 0;
  // Counts the reads while watched; at MAX_WATCHED_READS reading stops (see MAX_WATCHED_READS).
  const push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && ++reads >= MAX_WATCHED_READS) state.highWaterMark = 0;
    return Socket.prototype.push.call(sock, chunk, encoding);
  };
  const off = () => {
    sock.off('end', gone);
    sock.off('close', gone);
    if (sock.push === push) {
      delete (sock as { push?: unknown }).push;
      state.highWaterMark = highWaterMark;
    }
  };
  function gone(): void {
    off();
    ac.abort(new LocalClientGone());
  }
  return {
    signal: ac.signal,
    watch() {
      if (watching || ac.signal.aborted) return;
      watching = true;
      // readableEnded: an end seen before (nothing was buffered at the FIN).
      if (sock.destroyed || sock.readableEnded) return gone();
      sock.on('end', gone);
      sock.on('close', gone);
      sock.push = push;
      sock.read(0);
    },
    release() {
      off();
      watching = false;
    },
  };
}
