import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Bridge } from './bridge.js';

export interface IdleChannelsOptions {
  /** --channel-idle-timeout; undefined: bridges are never closed for being idle. */
  idleMs: number | undefined;
  clock: Clock;
  log: Logger;
  /** Runs the sweep exception-safely (the connection's FaultGuard). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
}

/**
 * One connection's bridges watched for --channel-idle-timeout: a bridge that moved no byte
 * either way for `idleMs` is closed, since it holds channel slots X and Y could use. The sweep
 * timer runs only while a bridge is watched, every quarter of the timeout (250 ms to 30 s).
 */
export class IdleChannels {
  readonly #o: IdleChannelsOptions;
  /** Bytes seen at the last sweep, since when, and whether the sweep closed it. */
  readonly #idle = new Map<Bridge, { total: number; since: number; timedOut: boolean }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(o: IdleChannelsOptions) {
    this.#o = o;
  }

  watch(b: Bridge): void {
    const { idleMs } = this.#o;
    if (idleMs === undefined) return;
    this.#idle.set(b, { total: -1, since: this.#o.clock.now().getTime(), timedOut: false });
    if (this.#timer) return;
    this.#timer = setInterval(this.#o.wrap('idle-sweep', () => this.#sweep(idleMs)), Math.max(250, Math.min(30_000, Math.floor(idleMs / 4))));
    this.#timer.unref();
  }

  /** Stops watching `b`; true when it was closed for being idle. */
  unwatch(b: Bridge): boolean {
    const s = this.#idle.get(b);
    this.#idle.delete(b);
    if (this.#idle.size === 0) this.close();
    return s?.timedOut ?? false;
  }

  /** Stops the sweep (the connection closed). */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(idleMs: number): void {
    const now = this.#o.clock.now().getTime();
    for (const [b, s] of this.#idle) {
      const { aToB, bToA } = b.stats();
      if (aToB + bToA !== s.total) {
        s.total = aToB + bToA;
        s.since = now;
      } else if (now - s.since >= idleMs && !s.timedOut) {
        s.timedOut = true;
        this.#o.log.info('idle channel closed', { idleMs, bytes: s.total });
        b.abort();
      }
    }
  }
}
