import type { Socket } from 'node:net';

/**
 * Backpressure that follows the socket. ssh2's `Channel#_write` calls back as soon as the
 * peer's window allows, and ssh2 writes every packet to the socket without looking at
 * `write()`'s result, so a peer that grants a huge window (or starts a re-key, or asks for
 * replies) and then stops reading makes the relay queue without bound. A SendBudget watches
 * what is buffered for one SSH peer: the socket's write queue plus what ssh2 holds back during
 * a key exchange. At `limit` it is *over*: bridges stop feeding it (they pause the stream on
 * the other side, which stops granting window there). At twice the limit the relay also stops
 * reading the peer's own socket, so requests that want a reply (a `keepalive@openssh.com`
 * flood) cannot grow the queue either. Bridged data alone never reaches that second mark
 * (bridges write nothing to a peer that is over: they stop at `limit` plus the one chunk that
 * crossed it, node/forwarding/bridge.ts), so a legitimate peer that is only slow, or in a key
 * exchange with many busy channels, keeps being read. A peer that stays over the limit and takes nothing from it for
 * `stallMs` is stalled: `onStall` disconnects it.
 *
 * Buffered bytes may exceed `limit` by the chunk that crossed it (at most 32 KiB from an ssh2
 * channel, 64 KiB from a TCP socket). Bridges leave nothing in a channel waiting for its peer's
 * window (they write only what the window takes), so a peer that opens many windows at once
 * releases nothing past the bound.
 */
export interface SendBudgetOptions {
  socket: Socket;
  /** Bytes ssh2 holds outside the socket (the key exchange queue). */
  held(): number;
  limit: number;
  stallMs: number;
  /** Went over the limit (counted once per episode). */
  onOver(): void;
  /** Stopped reading the peer (at twice the limit). */
  onReadPaused(): void;
  /** Over the limit and no progress for stallMs. */
  onStall(): void;
  /** Each new per-connection peak, for the relay-wide high-water mark. */
  onPeak(bytes: number): void;
  /** Runs callbacks the budget calls later (from socket events and timers) exception-safely. */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
}

/** What a bridge needs to know about the peer it writes to. */
export interface SendGate {
  /** Re-evaluates after a write; true when the writer must stop and wait for `whenOpen`. */
  update(): boolean;
  /** Calls `cb` once the peer is under its limit again (at once if it is). */
  whenOpen(cb: () => void): void;
  /** Bytes queued for the peer now (live channel data, node/forwarding/live-bytes.ts). */
  readonly buffered: number;
}

/**
 * Bytes the kernel has accepted from this socket so far. Node counts bytes handed to libuv
 * (`_bytesDispatched`) and libuv reports what it still holds (`_handle.writeQueueSize`, a live
 * value that moves as partial writes reach the kernel), so a slow reader shows progress long
 * before a large write request completes. Node internals, stable since Node 10; without them
 * the completed writes are used.
 */
export function acceptedByKernel(sock: Socket): number {
  const s = sock as unknown as { _bytesDispatched?: unknown; _handle?: { writeQueueSize?: unknown } | null };
  if (typeof s._bytesDispatched === 'number' && typeof s._handle?.writeQueueSize === 'number') return s._bytesDispatched - s._handle.writeQueueSize;
  return (sock.bytesWritten ?? 0) - sock.writableLength;
}

export class SendBudget implements SendGate {
  readonly #o: SendBudgetOptions;
  #over = false;
  #readPaused = false;
  #closed = false;
  #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #mark = { accepted: 0, handshakes: 0 };
  #handshakes = 0;
  #peak = 0;

  constructor(o: SendBudgetOptions) {
    this.#o = o;
    o.socket.on('drain', o.wrap('send-budget', () => this.update()));
  }

  /** Bytes buffered for the peer now: in the socket, and held by ssh2. */
  get socketBytes(): number {
    return this.#o.socket.writableLength;
  }
  get heldBytes(): number {
    return this.#o.held();
  }
  get buffered(): number {
    return this.socketBytes + this.heldBytes;
  }
  get over(): boolean {
    return this.#over;
  }
  get peak(): number {
    return this.#peak;
  }

  update(): boolean {
    if (this.#closed) return false;
    const n = this.buffered;
    if (n > this.#peak) {
      this.#peak = n;
      this.#o.onPeak(n);
    }
    const limit = this.#o.limit;
    if (n >= limit) {
      if (!this.#over) this.#enterOver();
      if (n >= 2 * limit && !this.#readPaused) {
        this.#readPaused = true;
        this.#o.socket.pause();
        this.#o.onReadPaused();
      }
      return true;
    }
    if (this.#over) this.#leaveOver();
    return false;
  }

  /** ssh2 finished a key exchange (it has flushed what it held to the socket). */
  handshake(): void {
    this.#handshakes++;
    this.update();
  }

  whenOpen(cb: () => void): void {
    if (this.#closed) return;
    if (!this.#over) cb();
    else this.#waiters.push(cb);
  }

  /** The connection is gone: drop waiters and the timer. */
  close(): void {
    this.#closed = true;
    this.#waiters = [];
    clearTimeout(this.#timer);
  }

  #enterOver(): void {
    this.#over = true;
    this.#o.onOver();
    this.#arm();
  }

  #leaveOver(): void {
    this.#over = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#readPaused) {
      this.#readPaused = false;
      this.#o.socket.resume();
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #arm(): void {
    this.#mark = { accepted: acceptedByKernel(this.#o.socket), handshakes: this.#handshakes };
    this.#timer = setTimeout(
      this.#o.wrap('send-budget', () => this.#check()),
      this.#o.stallMs,
    );
    this.#timer.unref();
  }

  /** Over for a whole period: progress (the kernel took bytes, or a key exchange finished) re-arms; none is a stall. */
  #check(): void {
    this.#timer = undefined;
    if (this.#closed || !this.update()) return;
    const progressed = acceptedByKernel(this.#o.socket) > this.#mark.accepted || this.#handshakes > this.#mark.handshakes;
    if (progressed) this.#arm();
    else this.#o.onStall();
  }
}
