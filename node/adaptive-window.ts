import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { channelWindow, STANDARD_WINDOW, type ChannelWindow } from './ssh2-internals.js';

/**
 * Adaptive SSH channel windows between Tunnel's own CLI and relay (HPN-SSH-like). SSH flow
 * control caps one stream at window / RTT: ssh2's (and OpenSSH's) 2 MiB window allows about
 * 40 MB/s at 50 ms whatever the link. A channel under a WindowBudget starts at that standard
 * window and probes for the path's bandwidth-delay product the way BBR's startup does: each
 * time a whole window's worth of data was delivered while the reader kept up, it measures the
 * delivery rate over that window; it doubles the window as long as the previous doubling raised
 * the rate by at least `minGain` (25%), and when a doubling did not, the window goes back to
 * what it was and stops growing (the window is no longer the limit: a CPU-bound or short path,
 * where a bigger window would only queue bytes in the sender's socket). It never grows past the
 * per-channel cap or what the budget has left. When the reader falls behind (the channel's
 * readable side is full), the window is halved and what it no longer needs goes back to the
 * budget; a channel that moved nothing for a sweep period goes back to the standard window and
 * probes again when data flows. A settled channel tries one more doubling every 16 windows (a
 * noisy measurement or a machine that got quieter does not pin it for good).
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
  /** A doubling is kept only if the delivery rate grew by this factor (default 1.25; 1: always keep). */
  minGain?: number;
  /** Milliseconds, for delivery rates (default performance.now). */
  now?: () => number;
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
  readonly minGain: number;
  readonly now: () => number;

  constructor(o: WindowBudgetOptions) {
    if (!(o.budgetBytes >= 0) || !(o.channelMaxBytes >= STANDARD_WINDOW)) throw new RangeError(`window budget >= 0 and channel max >= ${STANDARD_WINDOW}`);
    this.budget = o.budgetBytes;
    this.channelMax = o.channelMaxBytes;
    this.#sweepMs = o.sweepMs ?? 2_000;
    this.minGain = o.minGain ?? 1.25;
    this.now = o.now ?? (() => performance.now());
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

/** A settled channel tries one more doubling after this many windows delivered. */
const REPROBE_EPOCHS = 16;

class AdaptiveChannel {
  /** Bytes reserved from the budget: what this channel may hold above the standard (see the file comment). */
  reserved = 0;
  /** The reservation it wants now (window = STANDARD_WINDOW + wanted); `reserved` follows it down as the channel drains. */
  #wanted = 0;
  readonly #budget: WindowBudget;
  readonly #w: ChannelWindow;
  /** This epoch (one window's worth of delivered data): bytes, start, and whether the reader fell behind. */
  #delivered = 0;
  #epochStart: number;
  #behind = false;
  /** Startup probing: the rate measured before the last doubling, and the reservation before it. */
  #probing = true;
  #rateBefore: number | undefined;
  #reservedBefore = 0;
  /** Windows delivered since probing stopped: after REPROBE_EPOCHS it tries one more doubling (load and paths change). */
  #settledEpochs = 0;
  #receivedSinceSweep = 0;
  #gone = false;

  constructor(budget: WindowBudget, w: ChannelWindow) {
    this.#budget = budget;
    this.#w = w;
    this.#epochStart = budget.now();
    w.hook({ received: (n, accepted) => this.#received(n, accepted), drained: () => this.#topUp() });
  }

  get committed(): number {
    return this.#w.window() + this.#w.readable();
  }

  get #target(): number {
    return STANDARD_WINDOW + this.#wanted;
  }

  #received(n: number, accepted: boolean): void {
    this.#receivedSinceSweep += n;
    if (!accepted) {
      // The reader is the limit now, not the window: halve the window.
      this.#behind = true;
      this.#want(Math.floor(this.#wanted / 2));
      return;
    }
    if (this.reserved > this.#wanted) this.#shrinkTo(this.#wanted);
    this.#delivered += n;
    if (this.#delivered >= this.#target) {
      const now = this.#budget.now();
      const rate = this.#delivered / Math.max(now - this.#epochStart, 0.001);
      if (!this.#behind && !this.#probing && ++this.#settledEpochs >= REPROBE_EPOCHS) {
        this.#probing = true;
        this.#rateBefore = undefined; // this window's rate is the baseline the next doubling must beat
      }
      if (!this.#behind && this.#probing) this.#probe(rate);
      this.#delivered = 0;
      this.#epochStart = now;
      this.#behind = false;
    }
    this.#topUp();
  }

  /** One window delivered at `rate` while the reader kept up: double again, or settle. */
  #probe(rate: number): void {
    if (this.#rateBefore !== undefined && rate < this.#rateBefore * this.#budget.minGain) {
      // The last doubling did not pay: the window is not what limits this path.
      this.#want(this.#reservedBefore);
      this.#stopProbing();
      return;
    }
    this.#rateBefore = rate;
    this.#reservedBefore = this.#wanted;
    const next = Math.min(2 * this.#target, this.#budget.channelMax);
    // What it still holds above what it wants (draining after a halving) counts first.
    const more = Math.max(0, next - STANDARD_WINDOW - this.reserved);
    const got = this.#budget.take(more);
    this.reserved += got;
    this.#wanted = Math.min(next - STANDARD_WINDOW, this.reserved);
    if (got < more || next === this.#budget.channelMax) this.#stopProbing(); // at the cap or out of budget: nothing left to learn
  }

  #stopProbing(): void {
    this.#probing = false;
    this.#settledEpochs = 0;
  }

  /** Wants `bytes` from now; gives back what it holds above that as far as it can. */
  #want(bytes: number): void {
    this.#wanted = Math.min(this.#wanted, Math.max(0, bytes));
    this.#shrinkTo(this.#wanted);
  }

  /** Grants the peer the window back up to the target once a quarter of it was used. */
  #topUp(): void {
    if (this.#gone || this.#wanted === 0) return; // standard window: ssh2 manages it
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
    if (this.#receivedSinceSweep === 0) {
      this.#want(0);
      // Probe afresh when data flows again: the path or the load may have changed.
      this.#probing = true;
      this.#rateBefore = undefined;
      this.#reservedBefore = 0;
      this.#delivered = 0;
      this.#epochStart = this.#budget.now();
    }
    this.#receivedSinceSweep = 0;
  }

  /** The channel closed: nothing more arrives, everything goes back. */
  release(): void {
    this.#gone = true;
    this.#budget.give(this.reserved);
    this.reserved = 0;
    this.#wanted = 0;
  }
}
