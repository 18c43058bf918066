import type { Duplex } from 'node:stream';
import type { ChannelAllowance } from './channel-memory.js';
import { channelWindow, STANDARD_WINDOW, type ChannelWindow } from './ssh2-internals.js';
import { monotonicMs } from '../shared/clock.js';

/**
 * Adaptive SSH channel windows between Tunnel's own CLI and relay (HPN-SSH-like). SSH flow
 * control caps one stream at window / RTT: ssh2's (and OpenSSH's) 2 MiB window allows about
 * 40 MB/s at 50 ms whatever the link. A channel under a WindowBudget starts at that standard
 * window and grows it while the window is what limits the stream, the way TCP's receive-buffer
 * autotuning and slow start do:
 *
 * - RTT samples. When the receiver grants window, it notes the time and the stream offset the
 *   sender could reach without that grant. When the first byte past that offset arrives, the
 *   time since the grant is one sample `d`: the grant's trip to the sender plus the data's trip
 *   back (at least one round trip), plus however long the sender took to get there. One sample
 *   is outstanding at a time, so about one per round trip.
 * - The first sample. The side that confirms a channel (the relay for Y's channels, the CLI for
 *   the relay's channels to X) adopts it with `accepted`: the peer cannot send before the
 *   confirmation reaches it, so its first byte is a round-trip sample taken before any data
 *   queues anywhere (on loopback about a millisecond). A first sample never doubles by itself.
 * - The path's round trip (`minRtt`): the smallest sample so far, or the connection's ping round
 *   trip if that is smaller (adopt's `pathRtt`; the relay pings its CLI peers, node/path-rtt.ts;
 *   the CLI's own channels judge by their samples alone).
 *   Samples alone cannot tell a sender waiting for the window from one that is slower than the
 *   path (CPU-bound on loopback): the grant goes out while most of the window is still to be sent,
 *   so every sample lasts as long as sending a window takes, they agree with each other, and the
 *   smallest one passes for the round trip. On a fresh relay whose data path is still being
 *   compiled the sender speeds up from sample to sample, and the window doubled to 16-32 MiB on
 *   loopback (issue 11: the relay held 20-30 MB for its first stream). A ping goes out while no
 *   data queues ahead of its reply: against its 0.5-2 ms on loopback such samples are not
 *   window-limited, while on a long path the ping measures the same round trip the samples do.
 * - Window-limited. The window doubles (up to the per-channel cap and what the budget has left)
 *   when a sample says the sender was waiting for that grant, which takes all of:
 *   - it is within `minRtt x 1.5 + 2 ms` (a larger one means the sender had window to spare: it
 *     is CPU- or source-bound, or bytes queue somewhere past the bandwidth-delay product);
 *   - the grant was prompt: it went out while the sender still had at least half the window in
 *     flight. A grant sent after the sender used up its window means the reader held the data
 *     back (the relay's bridge paused the channel because the other side was slower); the
 *     sender then waits a round trip for it whatever the window;
 *   - the path delivered at least half the window per `minRtt` since the last sample. A busy
 *     receiver that grants late and then reads its socket's backlog in one go produces short
 *     samples on loopback, with a fraction of the window delivered per round trip.
 *   So a long path grows by one doubling per round trip or two (2 to 32 MiB in about 4 to 8
 *   round trips), and a short or CPU-bound path (loopback) keeps the standard window (before,
 *   the first sample always doubled, and every pause of the relay's bridge doubled again: the
 *   relay held 20-40 MB for one loopback stream). Unlike a comparison of delivery rates between
 *   windows, one noisy measurement on a busy machine does not stop the growth for good; it only
 *   skips one doubling. On a machine whose CPUs are oversubscribed, scheduling delays are the
 *   round trip (tens of ms even on loopback), and windows grow as on a long path.
 * - The reader falls behind (the channel's readable side is full): the window is halved and what
 *   it no longer needs goes back to the budget. A channel that moved nothing for a sweep period
 *   goes back to the standard window and measures its round trip afresh when data flows again.
 *
 * The channel grants its window itself (top-ups once an eighth of it, at least 256 KiB, was
 * used and read), also while at the standard window, so every grant can carry a sample; ssh2's
 * own top-ups are off for it (node/ssh2-internals/channel-window.ts).
 *
 * Memory bound: data received and not yet read counts against the window, as in OpenSSH, so
 * what a channel holds, granted and not yet received plus received and not yet read
 * (`committed = window + readable`), never exceeds its target, `2 MiB + wanted <= 2 MiB +
 * reserved`, or what the reader asked for at once if more (`read(n)` past the readable high-water
 * mark: it waits for n unread bytes; the relay and the CLI never do): a reader paused by the
 * relay's bridge holds at most the window. (ssh2's own channels hold a 2 MiB window and up to
 * a 2 MiB readable buffer besides: a paused reader held 4 MiB, which is what issue 11 measured
 * per stream on a relay.) The reservations of all channels together never exceed `budgetBytes`,
 * and a reservation is only given back down to what the channel still has committed above
 * ssh2's standard 4 MiB, so `committed <= 4 MiB + reserved` holds at every moment (but for a
 * reader that asked for more), also while a halved window drains.
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
  /**
   * The most the channels of one owner (adopt's `owner`: the relay passes the member, so all of
   * one member's connections share it) may reserve together (default: the whole budget). SSH
   * cannot take back a window once granted, so a peer that grows windows and then sends nothing
   * keeps its reservation: this share is what one such member can pin, however many
   * connections it opens.
   */
  connectionShareBytes?: number;
  /** How often idle channels give their reservation back; 0: no timer (tests call sweep()). */
  sweepMs?: number;
  /**
   * A round-trip sample counts as window-limited when it is within `minRtt x (1 + rttSlack) +
   * rttSlackMs` (defaults 0.5 and 2 ms; tests pass Infinity to grow on every sample).
   */
  rttSlack?: number;
  rttSlackMs?: number;
  /** Milliseconds, for delivery rates (default: a monotonic clock, monotonicMs). */
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

/** What the channels of one owner have reserved together, and how many channels it has now. */
interface Share {
  reserved: number;
  channels: number;
}

export class WindowBudget {
  readonly budget: number;
  readonly channelMax: number;
  readonly connectionShare: number;
  /** Per owner, while it has channels (an owner may be a string: its entry goes with its last channel). */
  #shares = new Map<unknown, Share>();
  #reserved = 0;
  #peak = 0;
  #channels = new Set<AdaptiveChannel>();
  #timer: NodeJS.Timeout | undefined;
  readonly #sweepMs: number;
  readonly rttSlack: number;
  readonly rttSlackMs: number;
  readonly now: () => number;

  constructor(o: WindowBudgetOptions) {
    if (!(o.budgetBytes >= 0) || !(o.channelMaxBytes >= STANDARD_WINDOW)) throw new RangeError(`window budget >= 0 and channel max >= ${STANDARD_WINDOW}`);
    this.budget = o.budgetBytes;
    this.channelMax = o.channelMaxBytes;
    this.connectionShare = o.connectionShareBytes ?? o.budgetBytes;
    if (!(this.connectionShare >= 0)) throw new RangeError('connection share >= 0');
    this.#sweepMs = o.sweepMs ?? 2_000;
    this.rttSlack = o.rttSlack ?? 0.5;
    this.rttSlackMs = o.rttSlackMs ?? 2;
    this.now = o.now ?? monotonicMs;
  }

  /**
   * Puts an ssh2 channel (server or client side) under this budget. Returns false, leaving the
   * channel standard, when growth is off (budget 0 or channel max at the standard window).
   * `accepted`: this side confirmed the channel just now, so the peer cannot have sent data yet
   * and its first byte is a round-trip sample (see the file comment). `owner`: who the channel
   * belongs to (an object or a string, such as the member; its channels share
   * `connectionShareBytes`; default: the channel). `pathRtt`: the connection's round trip in ms
   * measured outside the data (pings), Infinity while unknown (see the file comment). `base`:
   * the relay's channel memory allowance (node/channel-memory.ts): the window the channel holds in
   * place of the standard one while that is smaller, and it grows only from the standard window.
   */
  adopt(ch: Duplex, o: { accepted?: boolean; owner?: unknown; pathRtt?: () => number; base?: ChannelAllowance } = {}): boolean {
    if (this.budget === 0 || this.channelMax <= STANDARD_WINDOW) return false;
    const owner = o.owner ?? ch;
    const w = channelWindow(ch);
    let share = this.#shares.get(owner);
    if (!share) this.#shares.set(owner, (share = { reserved: 0, channels: 0 }));
    share.channels++;
    const base = o.base;
    const a = new AdaptiveChannel(this, w, o.accepted === true, share, o.pathRtt ?? noPathRtt, base ? () => base.size() : standardBase);
    this.#channels.add(a);
    ch.once('close', () => this.#drop(a, owner, share));
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

  /** Up to `want` more bytes for one channel of the connection whose share is `share`; returns what it got. */
  take(want: number, share: Share): number {
    const got = Math.max(0, Math.min(want, this.budget - this.#reserved, this.connectionShare - share.reserved));
    this.#reserved += got;
    share.reserved += got;
    if (this.#reserved > this.#peak) this.#peak = this.#reserved;
    return got;
  }

  give(n: number, share: Share): void {
    this.#reserved -= n;
    share.reserved -= n;
  }

  #drop(a: AdaptiveChannel, owner: unknown, share: Share): void {
    if (!this.#channels.delete(a)) return;
    a.release();
    if (--share.channels === 0) this.#shares.delete(owner);
    if (this.#channels.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

const noPathRtt = (): number => Infinity;
const standardBase = (): number => STANDARD_WINDOW;

/** A grant is sent once this share of the target window was used (and at least TOP_UP_MIN, or half a smaller target). */
const TOP_UP_SHARE = 1 / 8;
const TOP_UP_MIN = 256 * 1024;

class AdaptiveChannel {
  /** Bytes reserved from the budget: what this channel may hold above the standard (see the file comment). */
  reserved = 0;
  /** The reservation it wants now (window = STANDARD_WINDOW + wanted); `reserved` follows it down as the channel drains. */
  #wanted = 0;
  readonly #budget: WindowBudget;
  readonly #w: ChannelWindow;
  /** Bytes received since adoption. */
  #received = 0;
  /**
   * The outstanding round-trip sample: when a grant went out, the offset the sender could reach
   * without it, and whether the sender still had half the window to send then (see #onRtt).
   */
  #sample: { at: number; offset: number; prompt: boolean } | undefined;
  /** The smallest round-trip sample so far (ms). */
  #minRtt = Infinity;
  /** Where the last sample ended (ms, bytes received): the delivery rate is measured from there. */
  #mark: { at: number; received: number } | undefined;
  /** The sample in flight when the window last doubled: it measured the window before (the doubling's grant was still on its way). */
  #stale = false;
  /** The reader fell behind and has not asked for more since (the window was halved once for it). */
  #behind = false;
  #receivedSinceSweep = 0;
  #gone = false;

  readonly #share: Share;
  /** The connection's round trip measured by pings (ms; Infinity while unknown). */
  readonly #pathRtt: () => number;
  /** The window it holds before growing: the standard one, or less while the relay's channel memory is short. */
  readonly #base: () => number;

  constructor(budget: WindowBudget, w: ChannelWindow, accepted: boolean, share: Share, pathRtt: () => number, base: () => number) {
    this.#share = share;
    this.#base = base;
    this.#pathRtt = pathRtt;
    this.#budget = budget;
    this.#w = w;
    // The confirmation is the first grant: the peer's first byte comes a round trip later.
    if (accepted) {
      this.#sample = { at: budget.now(), offset: 0, prompt: false };
      this.#mark = { at: budget.now(), received: 0 };
    }
    w.hook({
      received: (n, accepted) => this.#onData(n, accepted),
      drained: () => {
        this.#behind = false;
        this.#topUp();
      },
      consumed: () => this.#topUp(),
    });
  }

  get committed(): number {
    return this.#w.window() + this.#w.readable();
  }

  get #target(): number {
    const base = this.#base();
    return base < STANDARD_WINDOW ? base : STANDARD_WINDOW + this.#wanted;
  }

  #onData(n: number, accepted: boolean): void {
    this.#receivedSinceSweep += n;
    this.#received += n;
    if (!accepted) {
      // The reader is the limit now, not the window: halve the window once until the reader
      // catches up (every packet while it is behind is refused too), and drop the sample (the
      // reader's pause would count as round trip).
      this.#sample = undefined;
      if (!this.#behind) this.#want(Math.floor(this.#wanted / 2));
      this.#behind = true;
      return;
    }
    if (this.reserved > this.#wanted) this.#shrinkTo(this.#wanted);
    const s = this.#sample;
    if (s && this.#received > s.offset) {
      this.#sample = undefined;
      const now = this.#budget.now();
      const m = this.#mark;
      // Bytes per ms since the last sample ended (about one round trip of data when window-limited).
      const rate = m && now > m.at ? (this.#received - m.received) / (now - m.at) : 0;
      this.#mark = { at: now, received: this.#received };
      this.#onRtt(now - s.at, s.prompt, rate);
    }
    this.#topUp();
  }

  /**
   * One round-trip sample: double the window if the sender was waiting for the grant, and the
   * grant was `prompt`: it went out while the sender still had at least half the window to send
   * (granted and not yet received). A grant that went out after the sender had used (nearly)
   * all of its window means the reader held the data back (the relay's bridge paused this
   * channel because the other side was slower, or the process was busy): the sender then waits
   * one round trip for it whatever the window, and a bigger window would only hold more in the
   * reader's buffer. On loopback that is the usual case, and it used to double the window on
   * every pause of the reader.
   */
  #onRtt(d: number, prompt: boolean, rate: number): void {
    // The path's round trip: the smallest sample, or the pings' if smaller. Without pings the
    // first sample only measures: compared with itself it would always pass. A round trip that is
    // not a number of ms is unknown (NaN would fail every comparison below, and so pass them).
    const p = this.#pathRtt();
    const ping = Number.isFinite(p) && p >= 0 ? p : Infinity;
    const first = this.#minRtt === Infinity && ping === Infinity;
    if (d < this.#minRtt) this.#minRtt = d;
    if (first) return;
    const minRtt = Math.min(this.#minRtt, ping);
    if (this.#stale) {
      this.#stale = false;
      return;
    }
    if (!prompt) return; // the sender waited for the reader, not for the window
    if (d > minRtt * (1 + this.#budget.rttSlack) + this.#budget.rttSlackMs) return; // the sender had window to spare
    // A window-limited path delivers about one window per round trip. One that delivers less
    // than half the window per round trip (a CPU-bound sender or receiver on a short path, where
    // a busy receiver's late grant and its backlog read in one go look like a short round trip)
    // already has more window than it can use.
    if (rate * minRtt < this.#target / 2) return;
    if (this.#base() < STANDARD_WINDOW) return; // the relay's channel memory is short: no growth above the standard window
    const next = Math.min(2 * this.#target, this.#budget.channelMax);
    // What it still holds above what it wants (draining after a halving) counts first.
    const more = Math.max(0, next - STANDARD_WINDOW - this.reserved);
    this.reserved += this.#budget.take(more, this.#share);
    const wanted = Math.max(this.#wanted, Math.min(next - STANDARD_WINDOW, this.reserved));
    // The next sample starts with the grant that opens the bigger window, but it still shows
    // whether the sender waited at the old one: only the one after it measures the new window.
    if (wanted > this.#wanted) this.#stale = true;
    this.#wanted = wanted;
  }

  /** Wants `bytes` from now; gives back what it holds above that as far as it can. */
  #want(bytes: number): void {
    this.#wanted = Math.min(this.#wanted, Math.max(0, bytes));
    this.#shrinkTo(this.#wanted);
  }

  /**
   * Grants the peer the window back up to the target once an eighth of it (at least 256 KiB) was
   * used and read: data received and not yet read counts against the window, as in OpenSSH, so
   * a paused reader holds at most the target (see the file comment).
   */
  #topUp(): void {
    if (this.#gone) return;
    // A reader that asked for more than the target at once (read(n): its high-water mark) waits
    // for that much unread: granting less would leave it and the sender waiting for each other.
    // Only a mark raised above ssh2's own (the standard window) asks: taken as asking, ssh2's
    // 2 MiB mark topped every channel the relay's channel memory keeps small up to 2 MiB.
    const asked = this.#w.asked();
    const target = Math.max(this.#target, asked > STANDARD_WINDOW ? asked : 0);
    const window = this.#w.window();
    const grant = target - (window + this.#w.readable());
    // (A window the relay's channel memory keeps small, 64 KiB at least, is topped up once half of it was used.)
    if (grant < Math.max(target * TOP_UP_SHARE, Math.min(TOP_UP_MIN, target / 2))) return;
    if (!this.#sample) this.#sample = { at: this.#budget.now(), offset: this.#received + window, prompt: window >= target / 2 };
    this.#w.grant(grant);
  }

  /** Gives back reservation down to `bytes`, but never below what is still committed. */
  #shrinkTo(bytes: number): void {
    const floor = Math.max(0, this.committed - STANDARD_COMMITTED);
    const keep = Math.ceil(Math.max(bytes, floor));
    if (keep < this.reserved) {
      this.#budget.give(this.reserved - keep, this.#share);
      this.reserved = keep;
    }
  }

  sweep(): void {
    if (this.#receivedSinceSweep === 0) {
      this.#want(0);
      // Measure afresh when data flows again: the path may have changed.
      this.#sample = undefined;
      this.#minRtt = Infinity;
      this.#mark = undefined;
      this.#stale = false;
    }
    this.#receivedSinceSweep = 0;
  }

  /** The channel closed: nothing more arrives, everything goes back. */
  release(): void {
    this.#gone = true;
    this.#budget.give(this.reserved, this.#share);
    this.reserved = 0;
    this.#wanted = 0;
  }
}
