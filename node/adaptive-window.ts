import type { Duplex } from 'node:stream';
import { channelWindow, STANDARD_WINDOW, type ChannelWindow } from './ssh2-internals.js';

/**
 * Adaptive SSH channel windows between Tunnel's own CLI and relay (HPN-SSH-like). SSH flow
 * control caps one stream at window / RTT: ssh2's (and OpenSSH's) 2 MiB window allows about
 * 40 MB/s at 50 ms whatever the link. A channel under a WindowBudget starts at that standard
 * window and doubles it each time a whole window's worth of data was delivered without the
 * reader falling behind (the reader, not the window, is then not the limit): like TCP slow
 * start, the window grows until it covers the path's bandwidth-delay product, the per-channel
 * cap, or what the budget has left. When the reader falls behind (the channel's readable side
 * is full), the window is halved and what it no longer needs goes back to the budget; a channel
 * that moved nothing for a sweep period goes back to the standard window.
 *
 * Memory bound: a channel never has more than `2 MiB + reserved` bytes granted to the peer
 * and not yet received, and (as with ssh2's own windows) at most its readable high-water mark
 * (2 MiB) more received and not yet consumed; so what it can hold is
 * `committed = window + readable <= 4 MiB + reserved`, and the reservations of all channels
 * together never exceed `budgetBytes`. A reservation is only given back down to what the
 * channel still has committed above the standard 4 MiB, so the bound holds at every moment.
 *
 * Only for peers that are Tunnel's own (the relay checks the client's identification, the CLI
 * the relay's): every other peer gets ssh2's standard 2 MiB behaviour, untouched.
 */

/** ssh2's own per-channel bound: a 2 MiB window plus a 2 MiB readable high-water mark. */
export const STANDARD_COMMITTED = 2 * STANDARD_WINDOW;

export interface WindowBudgetOptions {
  /** Total bytes all channels together may have reserved above the standard window. */
  budgetBytes: number;
  /** Largest window one channel may grow to (at least the standard 2 MiB). */
  channelMaxBytes: number;
  /** How often idle channels give their reservation back; 0: no timer (tests call sweep()). */
  sweepMs?: number;
}

export interface WindowBudgetStatus {
  budget: number;
  channelMax: number;
  /** Bytes reserved above the standard window now, all channels together. */
  reserved: number;
  /** The largest `reserved` seen since start. */
  peakReserved: number;
  /** Channels under this budget now, and how many of them have a window above the standard. */
  channels: number;
  grown: number;
  /** Bytes now committed above the standard 4 MiB (window + readable), all channels: never above `reserved`. */
  committedAbove(): number;
}

export class WindowBudget {
  readonly budget: number;
  readonly channelMax: number;
  #reserved = 0;
  #peak = 0;
  #channels = new Set<AdaptiveChannel>();
  #timer: NodeJS.Timeout | undefined;
  readonly #sweepMs: number;

  constructor(o: WindowBudgetOptions) {
    if (!(o.budgetBytes >= 0) || !(o.channelMaxBytes >= STANDARD_WINDOW)) throw new RangeError(`window budget >= 0 and channel max >= ${STANDARD_WINDOW}`);
    this.budget = o.budgetBytes;
    this.channelMax = o.channelMaxBytes;
    this.#sweepMs = o.sweepMs ?? 2_000;
  }

  /**
   * Puts an ssh2 channel (server or client side) under this budget. Returns false, leaving the
   * channel standard, when growth is off (budget 0 or channel max at the standard window).
   */
  adopt(ch: Duplex): boolean {
    if (this.budget === 0 || this.channelMax <= STANDARD_WINDOW) return false;
    const a = new AdaptiveChannel(this, channelWindow(ch));
    this.#channels.add(a);
    ch.once('close', () => this.#drop(a));
    if (!this.#timer && this.#sweepMs > 0) {
      this.#timer = setInterval(() => this.sweep(), this.#sweepMs);
      this.#timer.unref();
    }
    return true;
  }

  /** Idle channels (nothing received since the last sweep) go back to the standard window. */
  sweep(): void {
    for (const a of this.#channels) a.sweep();
  }

  status(): WindowBudgetStatus {
    let grown = 0;
    for (const a of this.#channels) if (a.reserved > 0) grown++;
    return {
      budget: this.budget,
      channelMax: this.channelMax,
      reserved: this.#reserved,
      peakReserved: this.#peak,
      channels: this.#channels.size,
      grown,
      committedAbove: () => [...this.#channels].reduce((n, a) => n + Math.max(0, a.committed - STANDARD_COMMITTED), 0),
    };
  }

  /** Up to `want` more bytes for one channel; returns what it got. */
  take(want: number): number {
    const got = Math.max(0, Math.min(want, this.budget - this.#reserved));
    this.#reserved += got;
    if (this.#reserved > this.#peak) this.#peak = this.#reserved;
    return got;
  }

  give(n: number): void {
    this.#reserved -= n;
  }

  #drop(a: AdaptiveChannel): void {
    if (!this.#channels.delete(a)) return;
    a.release();
    if (this.#channels.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

class AdaptiveChannel {
  /** Bytes reserved from the budget: the window may be STANDARD_WINDOW + reserved. */
  reserved = 0;
  readonly #budget: WindowBudget;
  readonly #w: ChannelWindow;
  /** Bytes delivered since the window last grew, and whether the reader fell behind meanwhile. */
  #delivered = 0;
  #behind = false;
  #receivedSinceSweep = 0;
  #gone = false;

  constructor(budget: WindowBudget, w: ChannelWindow) {
    this.#budget = budget;
    this.#w = w;
    w.hook({ received: (n, accepted) => this.#received(n, accepted), drained: () => this.#topUp() });
  }

  get committed(): number {
    return this.#w.window() + this.#w.readable();
  }

  get #target(): number {
    return STANDARD_WINDOW + this.reserved;
  }

  #received(n: number, accepted: boolean): void {
    this.#receivedSinceSweep += n;
    if (!accepted) {
      // The reader is the limit now, not the window: halve what this channel holds back.
      this.#behind = true;
      this.#shrinkTo(this.reserved / 2);
      return;
    }
    this.#delivered += n;
    if (this.#delivered >= this.#target) {
      if (!this.#behind) this.#grow();
      this.#delivered = 0;
      this.#behind = false;
    }
    this.#topUp();
  }

  #grow(): void {
    const next = Math.min(2 * this.#target, this.#budget.channelMax);
    this.reserved += this.#budget.take(next - this.#target);
  }

  /** Grants the peer the window back up to the target once a quarter of it was used. */
  #topUp(): void {
    if (this.#gone || this.reserved === 0) return; // standard window: ssh2 manages it
    const target = this.#target;
    const window = this.#w.window();
    if (window > target - target / 4) return;
    // Never past the bound: committed <= STANDARD_COMMITTED + reserved (see the file comment).
    const room = STANDARD_COMMITTED + this.reserved - (window + this.#w.readable());
    const grant = Math.min(target - window, room);
    if (grant > 0) this.#w.grant(grant);
  }

  /** Gives back reservation down to `bytes`, but never below what is still committed. */
  #shrinkTo(bytes: number): void {
    const floor = Math.max(0, this.committed - STANDARD_COMMITTED);
    const keep = Math.ceil(Math.max(bytes, floor));
    if (keep < this.reserved) {
      this.#budget.give(this.reserved - keep);
      this.reserved = keep;
    }
  }

  sweep(): void {
    if (this.#receivedSinceSweep === 0) this.#shrinkTo(0);
    this.#receivedSinceSweep = 0;
  }

  /** The channel closed: nothing more arrives, everything goes back. */
  release(): void {
    this.#gone = true;
    this.#budget.give(this.reserved);
    this.reserved = 0;
  }
}
