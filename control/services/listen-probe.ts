import { randomBytes } from 'node:crypto';
import type { Logger } from '../../shared/logger.js';
import { monotonicMs } from '../../shared/clock.js';

/** The prefix of a probe's NOTIFY payload; other payloads (node ids, '*', '!' credential notices) never start with it. */
export const PROBE_PREFIX = '~probe:';

export interface ListenProbeOptions {
  /** Sends `payload` on the revocations channel (pg_notify); may fail (the database is down). */
  notify(payload: string): Promise<void>;
  logger: Logger;
  /** Between two probes. */
  everyMs: number;
  /** This long without hearing its own probe back, LISTEN counts as deaf. */
  deafAfterMs: number;
  /** Called on each change: false when LISTEN went deaf, true when it hears again. */
  onChange(hearing: boolean): void;
}

/**
 * Whether this replica's LISTEN hears the revocations channel, found by sending itself a NOTIFY
 * every `everyMs` and waiting for it to come back. Another replica's revocation wakes this
 * replica's held relay polls only through LISTEN: deaf (its connection down and not back yet,
 * or a connection pooler in transaction mode, through which LISTEN takes but nothing arrives), a
 * held poll waited out its whole hold (20 s) before the relay learned of a revocation. The
 * caller shortens the hold while LISTEN is deaf (server.ts, RevocationHub.holdCapMs).
 */
export class ListenProbe {
  readonly #opts: ListenProbeOptions;
  readonly #id = randomBytes(6).toString('hex');
  #seq = 0;
  /** monotonicMs() of the last probe of this replica heard back (start: now, so a first probe has its time). */
  #heardAt = monotonicMs();
  #hearing = true;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ListenProbeOptions) {
    this.#opts = opts;
  }

  get hearing(): boolean {
    return this.#hearing;
  }

  /** Probes of this replica's heard back so far (tests). */
  heardCount = 0;

  start(): void {
    const tick = () => {
      this.check();
      this.#send();
      this.#timer = setTimeout(tick, this.#opts.everyMs);
      this.#timer.unref();
    };
    tick();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * A payload heard on the channel: true when it is a probe (this replica's or another's), which
   * the caller then ignores; a probe of this replica's means LISTEN hears.
   */
  heard(payload: string): boolean {
    if (!payload.startsWith(PROBE_PREFIX)) return false;
    if (payload.slice(PROBE_PREFIX.length).split(':')[0] === this.#id) {
      this.#heardAt = monotonicMs();
      this.heardCount++;
      this.#set(true);
    }
    return true;
  }

  /** Turns deaf when no probe of its own came back for `deafAfterMs` (each tick, and for tests). */
  check(): void {
    if (monotonicMs() - this.#heardAt >= this.#opts.deafAfterMs) this.#set(false);
  }

  #send(): void {
    this.#opts.notify(`${PROBE_PREFIX}${this.#id}:${++this.#seq}`).catch(() => {
      // The database is down: nothing is heard then either, and every request says so.
    });
  }

  #set(hearing: boolean): void {
    if (this.#hearing === hearing) return;
    this.#hearing = hearing;
    if (hearing) this.#opts.logger.info('LISTEN hears the revocations channel again: relay polls are held as usual', {});
    else {
      this.#opts.logger.warn(
        "LISTEN hears nothing on the revocations channel (its connection is down, or a connection pooler in transaction mode is between this replica and Postgres): other replicas' revocations cannot wake the relay polls held here, so they are held at most 2 s and relays read the feed from the database",
        { deafForMs: Math.round(monotonicMs() - this.#heardAt) },
      );
    }
    try {
      this.#opts.onChange(hearing);
    } catch (err) {
      this.#opts.logger.error('listen probe: the change callback failed', { err });
    }
  }
}
