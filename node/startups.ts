import { sourceKey } from '../shared/source-key.js';

export { sourceKey };

/**
 * Caps on unauthenticated connections ("startups"), after OpenSSH's `MaxStartups start:rate:full`
 * and `PerSourceMaxStartups`. A connection is a startup from TCP accept until its authentication
 * completes (or it closes). With `start` or more startups, a new connection is dropped with
 * probability `rate`% rising linearly to 100% at `full`; a source address (an IPv6 /64 counts
 * as one source, as OpenSSH's PerSourceNetBlockSize default does) may hold at most `perSource`.
 */

export interface StartupLimits {
  start: number;
  /** Percent, 0..100. */
  rate: number;
  full: number;
  perSource: number;
}

export type StartupDrop = 'max_startups' | 'max_startups_random' | 'per_source';

export class Startups {
  #limits: StartupLimits;
  #random: () => number;
  #total = 0;
  #bySource = new Map<string, number>();

  constructor(limits: StartupLimits, random: () => number = Math.random) {
    if (!(limits.start >= 1 && limits.start <= limits.full && limits.rate >= 0 && limits.rate <= 100 && limits.perSource >= 1)) {
      throw new RangeError('startup limits must satisfy 1 <= start <= full, 0 <= rate <= 100, perSource >= 1');
    }
    this.#limits = limits;
    this.#random = random;
  }

  /** Unauthenticated connections now. */
  get count(): number {
    return this.#total;
  }

  /** Source addresses holding at least one unauthenticated connection. */
  get sources(): number {
    return this.#bySource.size;
  }

  /**
   * Takes a slot for a new connection from `ip`, or says why it must be dropped. The returned
   * release is idempotent: call it when authentication completes and again on close.
   */
  admit(ip: string): { ok: true; release: () => void } | { ok: false; reason: StartupDrop } {
    const { start, rate, full, perSource } = this.#limits;
    const key = sourceKey(ip);
    const n = this.#total;
    if (n >= full) return { ok: false, reason: 'max_startups' };
    if ((this.#bySource.get(key) ?? 0) >= perSource) return { ok: false, reason: 'per_source' };
    if (n >= start) {
      // OpenSSH's drop_connection(): rate% at `start`, rising linearly to 100% at `full`.
      const p = full === start ? 100 : rate + ((100 - rate) * (n - start)) / (full - start);
      if (this.#random() * 100 < p) return { ok: false, reason: 'max_startups_random' };
    }
    this.#total++;
    this.#bySource.set(key, (this.#bySource.get(key) ?? 0) + 1);
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        this.#total--;
        const left = (this.#bySource.get(key) ?? 1) - 1;
        if (left > 0) this.#bySource.set(key, left);
        else this.#bySource.delete(key);
      },
    };
  }
}
