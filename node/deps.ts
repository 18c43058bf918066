import { randomBytes } from 'node:crypto';

/** Wall-clock time, injected so expiry and validity checks are testable. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock tests can move by hand. */
export class ManualClock implements Clock {
  #t: number;
  constructor(start: Date = new Date()) {
    this.#t = start.getTime();
  }
  now(): Date {
    return new Date(this.#t);
  }
  advance(ms: number): void {
    this.#t += ms;
  }
  set(d: Date): void {
    this.#t = d.getTime();
  }
}

/** Identifier generation, injected so tests can predict ids. */
export interface Ids {
  /** A short random id for an SSH session (connection). */
  session(): string;
  /** A random id for a bridged channel pair. */
  channel(): string;
}

export const randomIds: Ids = {
  session: () => `s_${randomBytes(8).toString('hex')}`,
  channel: () => `c_${randomBytes(8).toString('hex')}`,
};
