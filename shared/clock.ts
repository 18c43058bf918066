/** Wall-clock time, injected so expiry and validity checks are testable without fake timers. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock tests move by hand; it starts at `start` (now by default). */
export class ManualClock implements Clock {
  #ms: number;
  constructor(start: Date | number = Date.now()) {
    this.#ms = typeof start === 'number' ? start : start.getTime();
  }
  now(): Date {
    return new Date(this.#ms);
  }
  advance(ms: number): void {
    this.#ms += ms;
  }
  set(at: Date): void {
    this.#ms = at.getTime();
  }
}

export function unixSeconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

/**
 * Milliseconds from the process's monotonic clock, for timers and rates that a step of the wall
 * clock (NTP) must not stretch or shrink. Not node:perf_hooks' performance.now: the
 * relay would load perf_hooks and its eight internal modules for this alone, about 0.6 MB of an
 * idle relay's RSS (issue 11; node/startup-memory.ts).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
