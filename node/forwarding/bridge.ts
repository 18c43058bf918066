import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** One side of a bridge: a stream plus how to half-close and close it. */
export interface BridgeEnd {
  stream: Duplex;
  /** Sends EOF once every queued write has been flushed, then calls `done`. */
  shutdownWrite(done: () => void): void;
  /** Closes both directions. Idempotent. */
  close(): void;
}

const EMPTY = Buffer.alloc(0);

/** The subset of ssh2's Channel the bridge needs. */
export interface SshChannelLike extends Duplex {
  eof(): void;
  close(): void;
}

/**
 * An ssh2 channel. `end()` on a server-side channel sends EOF *and* CLOSE together, which would
 * drop a reply sent after the peer's EOF (DESIGN "Facts about ssh2"), so half-close uses `eof()`
 * after an empty write has passed through the queue (writes complete in order).
 */
export function channelEnd(ch: SshChannelLike): BridgeEnd {
  return {
    stream: ch,
    shutdownWrite(done) {
      ch.write(EMPTY, () => {
        ch.eof();
        done();
      });
    },
    close() {
      ch.close();
    },
  };
}

/** A TCP socket (for egress targets): `end()` is a real half-close when allowHalfOpen is set. */
export function socketEnd(sock: Socket): BridgeEnd {
  sock.setNoDelay(true);
  return {
    stream: sock,
    shutdownWrite(done) {
      sock.end(done);
    },
    close() {
      sock.destroy();
    },
  };
}

export interface BridgeStats {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  bToA: number;
  /** 'eof' when both sides finished cleanly; otherwise why it was torn down. */
  end: 'eof' | 'closed' | 'error' | 'aborted';
}

export interface Bridge {
  stats(): Omit<BridgeStats, 'end'>;
  /** Tears both sides down now. */
  abort(): void;
}

/**
 * Joins two streams. Backpressure comes from `pipe` (a full writer pauses the reader, and an
 * ssh2 channel stops granting window while its reader is paused), so buffers stay bounded.
 * EOF is forwarded per direction; both sides are closed once both directions have ended, or
 * at once when either side closes or fails.
 */
export function bridge(a: BridgeEnd, b: BridgeEnd, onClose: (stats: BridgeStats) => void): Bridge {
  let aToB = 0;
  let bToA = 0;
  const st = {
    a: { ended: false, closed: false, eofSent: false },
    b: { ended: false, closed: false, eofSent: false },
  };
  let done = false;

  const finish = (end: BridgeStats['end']) => {
    if (done) return;
    done = true;
    a.stream.unpipe(b.stream);
    b.stream.unpipe(a.stream);
    a.close();
    b.close();
    onClose({ aToB, bToA, end });
  };
  // Done when both directions delivered their EOF, or when a side is gone and what it sent
  // has been flushed to the other side (a peer may send data, EOF and CLOSE back to back).
  const maybeFinish = () => {
    if (done) return;
    if (st.a.ended && st.b.ended && st.a.eofSent && st.b.eofSent) finish('eof');
    else if ((st.a.closed && st.b.eofSent) || (st.b.closed && st.a.eofSent) || (st.a.closed && st.b.closed)) finish('closed');
  };
  // `from` has no more data: half-close `to` once everything queued for it is written.
  const onEnd = (from: 'a' | 'b') => {
    const s = st[from];
    if (s.ended) return;
    s.ended = true;
    const to = from === 'a' ? b : a;
    const toState = from === 'a' ? st.b : st.a;
    if (done) return;
    to.shutdownWrite(() => {
      toState.eofSent = true;
      maybeFinish();
    });
  };
  const onGone = (from: 'a' | 'b') => {
    onEnd(from);
    st[from].closed = true;
    maybeFinish();
  };

  a.stream.on('data', (c: Buffer) => {
    aToB += c.length;
  });
  b.stream.on('data', (c: Buffer) => {
    bToA += c.length;
  });
  a.stream.pipe(b.stream, { end: false });
  b.stream.pipe(a.stream, { end: false });
  a.stream.once('end', () => onEnd('a'));
  b.stream.once('end', () => onEnd('b'));
  a.stream.once('close', () => onGone('a'));
  b.stream.once('close', () => onGone('b'));
  a.stream.on('error', () => finish('error'));
  b.stream.on('error', () => finish('error'));

  return {
    stats: () => ({ aToB, bToA }),
    abort: () => finish('aborted'),
  };
}
