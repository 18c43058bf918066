import type { Clock } from '../../shared/clock.js';
import { refilled } from '../per-minute-limit.js';

/**
 * Failed-authentication limiter per source address: a token bucket of `perMinute` failures
 * that refills continuously. While an address has no tokens left, new connections from it
 * are dropped before the SSH handshake. Memory is bounded by `maxAddresses` (the least
 * recently seen address is forgotten first).
 */
export class AuthRateLimiter {
  #buckets = new Map<string, { tokens: number; at: number }>();
  #perMinute: number;
  #clock: Clock;
  #maxAddresses: number;

  constructor(opts: { perMinute: number; clock: Clock; maxAddresses?: number }) {
    if (!(opts.perMinute >= 1)) throw new RangeError('perMinute must be >= 1');
    this.#perMinute = opts.perMinute;
    this.#clock = opts.clock;
    this.#maxAddresses = opts.maxAddresses ?? 10_000;
  }

  #refill(addr: string): { tokens: number; at: number } | undefined {
    const b = this.#buckets.get(addr);
    if (!b) return undefined;
    const now = this.#clock.now().getTime();
    b.tokens = refilled(b.tokens, b.at, now, this.#perMinute);
    b.at = now;
    if (b.tokens >= this.#perMinute) {
      this.#buckets.delete(addr);
      return undefined;
    }
    return b;
  }

  /** True when `addr` has used up its failures for now. */
  blocked(addr: string): boolean {
    const b = this.#refill(addr);
    return b !== undefined && b.tokens < 1;
  }

  recordFailure(addr: string): void {
    const b = this.#refill(addr) ?? { tokens: this.#perMinute, at: this.#clock.now().getTime() };
    b.tokens = Math.max(0, b.tokens - 1);
    this.#buckets.delete(addr);
    this.#buckets.set(addr, b);
    if (this.#buckets.size > this.#maxAddresses) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
  }

  get trackedAddresses(): number {
    return this.#buckets.size;
  }
}
