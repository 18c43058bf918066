import type { EventEmitter } from 'node:events';
import { STANDARD_WINDOW } from './ssh2-internals.js';

/**
 * What every channel may always hold, whatever the budget: two of ssh2's 32 KiB packets. A
 * channel at the floor still moves data (one packet in flight while the other is read), only
 * more slowly over a long path.
 */
export const CHANNEL_FLOOR = 64 * 1024;

/** What one channel may hold: window granted and not yet received, plus data received and not yet read. */
export interface ChannelAllowance {
  /**
   * The most the channel may hold now: the floor plus what it took from the relay's budget. While
   * that is under the standard 2 MiB window, it first takes more if the budget and its member's
   * share have room. Never smaller than an earlier answer: SSH cannot take back a granted window.
   */
  size(): number;
  /** The channel closed: what it took goes back (once; later calls do nothing). */
  release(): void;
}

export interface ChannelMemoryStatus {
  budget: number;
  memberShare: number;
  /** Bytes above the floor all channels have taken now, and the most at once since start. */
  taken: number;
  peak: number;
  channels: number;
  /** Channels whose allowance is below the standard window now (the budget or a share ran out). */
  short(): number;
}

/**
 * The relay's memory for channel data held at the relay, in bytes rather than counts. Every
 * channel the relay accepts from Y or opens to X lets its peer send up to its window before the
 * relay reads any of it; a bridge whose other side is slow (or a member's own exposure that never
 * reads) leaves that much in the relay. With ssh2's fixed 2 MiB per channel, one member at
 * `--max-channels-per-member` 256 could make the relay hold 512 MiB, and members together
 * without bound. Here each channel holds at most CHANNEL_FLOOR plus what it took from
 * `budgetBytes` (up to the standard window), and all channels of one member (whoever opened the
 * bridge: Y's member for both its channels) together take at most `memberShareBytes`. So the
 * relay holds at most `budget + channels x 64 KiB`, one member at most `share + its channels x
 * 64 KiB`, and a channel opened while the budget is spent starts at 64 KiB and grows as others
 * close. Adaptive growth above the standard window is a separate budget (node/adaptive-window.ts,
 * `--window-budget`).
 */
export class ChannelMemory {
  readonly budget: number;
  readonly memberShare: number;
  #taken = 0;
  #peak = 0;
  #open = new Set<{ taken: number }>();
  #members = new Map<string, { taken: number; channels: number }>();

  constructor(o: { budgetBytes: number; memberShareBytes?: number }) {
    if (!(Number.isSafeInteger(o.budgetBytes) && o.budgetBytes >= 0)) throw new RangeError('channel memory budget: a whole number of bytes >= 0');
    this.budget = o.budgetBytes;
    this.memberShare = o.memberShareBytes ?? o.budgetBytes;
    if (!(Number.isSafeInteger(this.memberShare) && this.memberShare >= 0)) throw new RangeError('channel memory member share: a whole number of bytes >= 0');
  }

  /** An allowance for one channel of `member`; its first size() is the window to open the channel with. */
  open(member: string): ChannelAllowance {
    let m = this.#members.get(member);
    if (!m) this.#members.set(member, (m = { taken: 0, channels: 0 }));
    const share = m;
    share.channels++;
    const ch = { taken: 0 };
    this.#open.add(ch);
    const most = STANDARD_WINDOW - CHANNEL_FLOOR;
    let gone = false;
    return {
      size: () => {
        if (!gone && ch.taken < most) {
          const got = Math.max(0, Math.min(most - ch.taken, this.budget - this.#taken, this.memberShare - share.taken));
          ch.taken += got;
          share.taken += got;
          this.#taken += got;
          if (this.#taken > this.#peak) this.#peak = this.#taken;
        }
        return CHANNEL_FLOOR + ch.taken;
      },
      release: () => {
        if (gone) return;
        gone = true;
        this.#open.delete(ch);
        this.#taken -= ch.taken;
        share.taken -= ch.taken;
        ch.taken = 0;
        if (--share.channels === 0) this.#members.delete(member);
      },
    };
  }

  status(): ChannelMemoryStatus {
    return {
      budget: this.budget,
      memberShare: this.memberShare,
      taken: this.#taken,
      peak: this.#peak,
      channels: this.#open.size,
      short: () => {
        let n = 0;
        for (const ch of this.#open) if (ch.taken < STANDARD_WINDOW - CHANNEL_FLOOR) n++;
        return n;
      },
    };
  }
}

const heldBy = new WeakMap<object, ChannelAllowance>();

/**
 * `ch` holds `allowance` until it emits 'close' or the relay closes it (releaseAllowanceOf, from
 * closeChannel in node/forwarding/bridge.ts), whichever comes first. An ssh2 channel emits 'close'
 * only once its peer answered the relay's CHANNEL_CLOSE: X (or Y) that never answers kept the
 * allowance, charged to the bridge's opener, for as long as its connection lasted (an honest Y's
 * whole share, 2 MiB a bridge it closed, to an X that never answers). Once the relay closed the
 * channel, what its peer still sends is read and dropped, not held.
 */
export function holdAllowance(ch: EventEmitter, allowance: ChannelAllowance): void {
  heldBy.set(ch, allowance);
  ch.once('close', () => allowance.release());
}

/** The relay closed `ch` and drops what it still receives: its allowance goes back now (once). */
export function releaseAllowanceOf(ch: object): void {
  heldBy.get(ch)?.release();
}
