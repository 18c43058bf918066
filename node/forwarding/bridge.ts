import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { releaseAllowanceOf } from '../channel-memory.js';
import { parkWhileWaiting, type ParkedChunks } from '../parked-chunks.js';
import type { SendGate } from '../send-budget.js';
import { channelSendWindow, onPeerClose, waitingChunks, type SendWindow } from '../ssh2-internals.js';

/** One side of a bridge: a stream plus how to half-close and close it. */
export interface BridgeEnd {
  stream: Duplex;
  /** Sends EOF once every queued write has been flushed, then calls `done`. */
  shutdownWrite(done: () => void): void;
  /** Closes both directions. Idempotent. */
  close(): void;
  /**
   * The SSH peer behind this end, when writes to `stream` complete before they reach its
   * socket (an ssh2 channel): the bridge stops feeding it while the peer is over its bound.
   */
  gate?: SendGate;
  /**
   * The peer's window, when `stream` is an ssh2 channel: the bridge writes only what it takes,
   * so nothing waits inside the channel for the peer's WINDOW_ADJUST.
   */
  window?: SendWindow;
  /**
   * Calls `cb` once when the SSH peer behind this end has closed it (its CHANNEL_CLOSE), before
   * the stream's 'close', which waits until what the peer sent has been read.
   */
  onPeerClose?(cb: () => void): void;
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
 * after an empty write has passed through the queue (writes complete in order). `peerClosed`, if
 * given, is called at the peer's CLOSE too (onPeerClose), before the bridge hears of it.
 */
export function channelEnd(ch: SshChannelLike, gate?: SendGate, peerClosed?: () => void): BridgeEnd {
  return {
    stream: ch,
    ...(gate ? { gate } : {}),
    window: channelSendWindow(ch),
    onPeerClose: peerClosed
      ? (cb) =>
          onPeerClose(ch, () => {
            peerClosed();
            cb();
          })
      : (cb) => onPeerClose(ch, cb),
    shutdownWrite(done) {
      ch.write(EMPTY, () => {
        ch.eof();
        done();
      });
    },
    close() {
      closeChannel(ch);
    },
  };
}

/**
 * Closes an ssh2 channel. Its 'close' (where its connection gives back its channel slot) comes
 * only once what it received is read to the end, so a channel closed before anything read it
 * (a bridge that never came to be, an open abandoned or answered late) is drained here: closed
 * unread, it held X's slot for as long as X's connection lasted. From here on what it receives is
 * dropped, so its channel memory goes back now, not at a 'close' its peer may never let come.
 */
export function closeChannel(ch: SshChannelLike): void {
  ch.resume();
  ch.close();
  releaseAllowanceOf(ch);
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
  /** Bytes waiting inside the two streams now (read but not yet taken, written but not yet sent on). */
  buffered(): number;
  /** Chunks (Buffers) waiting in the two streams' readable sides now (node/ssh2-internals/small-chunks.ts joins small ones). */
  bufferedChunks(): number;
  /** Tears both sides down now. */
  abort(): void;
  /** Whether the SSH peer behind `side` has closed its channel (its CHANNEL_CLOSE; BridgeEnd.onPeerClose). */
  peerClosed(side: 'a' | 'b'): boolean;
}

/**
 * Moves data from one end to the other with backpressure: the reader pauses while the writer
 * is full (`write()` returned false), or, for an ssh2 channel, while its peer is over its send
 * bound (`gate`) or its window is used up (`window`), and resumes once all are clear. A paused
 * ssh2 channel stops granting window, so the other peer stops sending. `pipe` alone is not
 * enough: an ssh2 channel's `write()` completes as soon as the peer's window allows, whether or
 * not its socket takes the bytes, and holds what the window does not take (up to its 2 MiB
 * high-water mark) to hand it to the socket the moment a WINDOW_ADJUST comes, past the bound.
 */
function pump(from: BridgeEnd, to: BridgeEnd, count: (n: number) => void, o: { finished(): boolean; gone(): boolean; stalled(): void; parked?: ParkedChunks }): () => void {
  const src = from.stream;
  const dst = to.stream;
  const parked = o.parked;
  const stopParking = parked ? parkWhileWaiting(src, parked) : undefined;
  const resume = () => {
    if (!o.finished()) src.resume();
  };
  const afterDrain = () => (to.gate ? to.gate.whenOpen(resume) : resume());
  const onData = (chunk: Buffer) => {
    // `to`'s peer closed its channel: it takes nothing more. The chunk stays in its source
    // (paused for good), dropped when the bridge closes.
    if (o.gone()) {
      src.pause();
      src.unshift(chunk);
      return o.stalled();
    }
    // A peer already over its send bound takes nothing more: the chunk goes back to the front
    // of its source, read again on resume. So however many channels feed one peer, what they
    // queue for it stops at the bound plus the one chunk that crossed it. Written first and
    // checked after, each channel added a chunk past the bound: with 32 busy channels (32 KiB
    // each, at the 1 MiB default) that reached twice the bound, where the relay stops reading
    // the peer; during a key exchange, which holds every packet until the relay reads the
    // peer's NEWKEYS, that pause never ended, and the peer was cut off as stalled.
    if (to.gate?.update()) {
      src.pause();
      src.unshift(parked ? parked.hold(chunk) : chunk);
      to.gate.whenOpen(resume);
      return o.stalled();
    }
    // What the peer's window does not take goes back to the source too, read again once the
    // window grew (and then only if the peer is under its bound). Left in the channel (a bridge
    // kept up to 64 KiB there), it went to the socket with the WINDOW_ADJUST, unchecked: a peer
    // that stopped reading and then opened 16 used-up windows at once had 1 MiB queued against
    // a 64 KiB bound (16 MiB per connection at 256 channels; test/node/send-bound-windows).
    const room = to.window ? to.window.room() : chunk.length;
    const c = room < chunk.length ? chunk.subarray(0, room) : chunk;
    let full = false;
    if (c.length > 0) {
      count(c.length);
      full = !dst.write(c);
    }
    if (c !== chunk) {
      src.pause();
      const rest = chunk.subarray(room);
      src.unshift(parked ? parked.hold(rest) : rest);
      to.window!.onGrow(resume);
      return o.stalled();
    }
    // Nothing of it is left in `dst` (its write copied it into a packet, or the kernel took it).
    if (parked && dst.writableLength === 0) parked.written(chunk);
    const over = to.gate?.update() ?? false;
    if (!full && !over) return;
    src.pause();
    if (full) dst.once('drain', afterDrain);
    else afterDrain();
    if (src.isPaused()) o.stalled();
  };
  src.on('data', onData);
  return () => {
    stopParking?.();
    src.off('data', onData);
    dst.off('drain', afterDrain);
  };
}

/**
 * Joins two streams (see `pump` for backpressure, which keeps buffers bounded). EOF is
 * forwarded per direction; both sides are closed once both directions have ended, or at once
 * when either side closes or fails.
 *
 * A peer that closed its channel (CHANNEL_CLOSE) takes nothing more: what the other side sends
 * toward it stays unread. What it sent before its CLOSE is still passed on (OpenSSH sends its last
 * data, EOF and CLOSE back to back once the other direction has ended, and paramiko closes
 * without waiting for the other side's EOF), unless it waits (the other side's window, bound or
 * buffer) while data for the closed peer is held too: then the peer left with data unread, as a
 * TCP socket closed with unread data resets its connection, and both sides close at once, what is
 * held either way dropped. Waiting for the channel's 'close' (which comes only once what its peer
 * sent is read), both sides stayed open, and the peer's slots held, until the other peer granted
 * window, which it need never do.
 */
export function bridge(a: BridgeEnd, b: BridgeEnd, onClose: (stats: BridgeStats) => void, opts: { parked?: ParkedChunks } = {}): Bridge {
  let aToB = 0;
  let bToA = 0;
  const st = {
    a: { ended: false, closed: false, eofSent: false, peerClosed: false },
    b: { ended: false, closed: false, eofSent: false, peerClosed: false },
  };
  let done = false;

  const finish = (end: BridgeStats['end']) => {
    if (done) return;
    done = true;
    stopAB();
    stopBA();
    // A paused ssh2 channel never emits 'end', so never 'close' (its connection would count it
    // open forever, e.g. X's channel slots): let what is left drain into the void.
    a.stream.resume();
    b.stream.resume();
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

  // `side`'s peer closed its channel: once what it sent waits while data for it is held, both
  // sides close (see above). Checked at its CLOSE, and whenever either direction stops after it.
  const leftUnread = (side: 'a' | 'b') => {
    if (!st[side].peerClosed) return;
    const [closed, other] = side === 'a' ? [a, b] : [b, a];
    if (closed.stream.isPaused() && other.stream.readableLength > 0) finish('closed');
  };
  const stalled = () => {
    leftUnread('a');
    leftUnread('b');
  };
  const parked = opts.parked ? { parked: opts.parked } : {};
  const stopAB = pump(a, b, (n) => (aToB += n), { finished: () => done, gone: () => st.b.peerClosed, stalled, ...parked });
  const stopBA = pump(b, a, (n) => (bToA += n), { finished: () => done, gone: () => st.a.peerClosed, stalled, ...parked });
  // After the pumps: a peer whose CLOSE came already is reported at once (and may finish).
  a.onPeerClose?.(() => {
    st.a.peerClosed = true;
    leftUnread('a');
  });
  b.onPeerClose?.(() => {
    st.b.peerClosed = true;
    leftUnread('b');
  });
  a.stream.once('end', () => onEnd('a'));
  b.stream.once('end', () => onEnd('b'));
  a.stream.once('close', () => onGone('a'));
  b.stream.once('close', () => onGone('b'));
  a.stream.on('error', () => finish('error'));
  b.stream.on('error', () => finish('error'));

  return {
    stats: () => ({ aToB, bToA }),
    buffered: () => a.stream.readableLength + a.stream.writableLength + b.stream.readableLength + b.stream.writableLength,
    bufferedChunks: () => waitingChunks(a.stream) + waitingChunks(b.stream),
    abort: () => finish('aborted'),
    peerClosed: (side) => st[side].peerClosed,
  };
}
