import { readFile } from 'node:fs/promises';
import { arr, BAD, num, obj, opt, str } from '../../protocol/check.js';
import { ControlError, type ControlClient } from '../control-client.js';
import { monotonicMs, type Clock } from '../../shared/clock.js';
import { writeFileAtomic } from '../../shared/write-file-atomic.js';
import type { Logger } from '../../shared/logger.js';
import { spreadWait } from '../retry-jitter.js';

/** The feed's state file as read (protocol/check.ts: no zod in the relay, issue 11). */
const stored = obj({
  cursor: opt(str()),
  revoked: arr(obj({ lease_id: str(), exp: num() })),
  /** When a poll was last answered (Unix seconds): how old what the relay knows is after a restart. */
  checked_at: opt(num()),
});

/** How often at most an answered poll that brought nothing is written to the state file only to record checked_at. */
const CHECKED_SAVE_MS = 60_000;
/** The longest delay setTimeout takes as given (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RevocationFeedOptions {
  client: Pick<ControlClient, 'revocations'>;
  clock: Clock;
  logger: Logger;
  /** Least time between polls that brought nothing new, and the longest delay after a failed poll (retryDelay). */
  intervalMs: number;
  /** Long poll: how long the control plane may hold a poll until there is news (0: plain polls). */
  waitMs?: number;
  /** Where the cursor and the still-relevant revocations are kept across restarts. */
  file: string;
  /** In [0, 1) (anything else counts as 0: drawShare): spreads the polls after a failed one (retryDelay). Math.random unless a test fixes it. */
  random?: () => number;
  onRevoked(leaseId: string): void;
  /**
   * The control plane refused the node credential (401: replaced when the node enrolled again,
   * or removed), so no revocation can reach the relay any more: called with false then, and with
   * true when a later poll is answered again. Called on each change only.
   */
  onCredential?(accepted: boolean): void;
  /**
   * How long the relay may go without an answered poll before what it knows of revocations is too
   * old to act on: onStale(true) then (fail closed), and onStale(false) once a poll is answered
   * and the feed read to its end. Counted from the last answered poll, also across restarts (the
   * state file's checked_at). Undefined: never (a relay that cannot reach the control plane keeps
   * carrying the leases it has until they expire).
   */
  maxStaleMs?: number;
  onStale?(stale: boolean): void;
}

/**
 * Follows the control plane's revocation feed: resumes from the last cursor, and remembers each
 * revoked lease until the lease itself would have expired. Long polls (`waitMs`): the control
 * plane answers as soon as a revocation for this node is committed, so a poll that brought news
 * is followed by the next one at once; one that brought nothing waits out the rest of
 * `intervalMs` first (a control plane that does not hold polls is asked at most that often); one
 * that failed waits retryDelay().
 */
export class RevocationFeed {
  #opts: RevocationFeedOptions;
  #revoked = new Map<string, number>();
  #cursor: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #failing = false;
  /** Why the last poll failed (status(), /healthz): the control plane's problem code when it sent one, else the client's. */
  #lastError: string | undefined;
  /** The Retry-After of the last poll, when it failed with one (a 503 or 429). */
  #retryAfterMs: number | undefined;
  #credentialRejected = false;
  #lastSuccess: Date | undefined;
  /** monotonicMs() of the last answered poll (at load: now less the state file's age). */
  #freshAt = monotonicMs();
  /** What the state file holds as checked_at (ms), so that an answered poll is written at most every CHECKED_SAVE_MS. */
  #savedCheckedAt = 0;
  #stale = false;
  #staleTimer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  /** Ends a held long poll at stop(). */
  #abort = new AbortController();

  constructor(opts: RevocationFeedOptions) {
    this.#opts = opts;
  }

  isRevoked(leaseId: string): boolean {
    return this.#revoked.has(leaseId);
  }

  /** Whether the control plane refuses the node credential (401; onCredential): no revocation reaches the relay now. */
  get credentialRejected(): boolean {
    return this.#credentialRejected;
  }

  /** Whether what the relay knows of revocations is older than `maxStaleMs` (onStale). */
  get stale(): boolean {
    return this.#stale;
  }

  status(): { entries: number; lastSuccessAt: string | null; failing: boolean; lastError: string | null; credentialRejected: boolean; stale: boolean } {
    return {
      entries: this.#revoked.size,
      lastSuccessAt: this.#lastSuccess?.toISOString() ?? null,
      failing: this.#failing,
      lastError: this.#failing ? (this.#lastError ?? null) : null,
      credentialRejected: this.#credentialRejected,
      stale: this.#stale,
    };
  }

  async load(): Promise<void> {
    try {
      const state = stored(JSON.parse(await readFile(this.#opts.file, 'utf8')));
      if (state === BAD) throw new Error('not a revocation state');
      this.#cursor = state.cursor;
      for (const r of state.revoked) this.#revoked.set(r.lease_id, r.exp);
      if (state.checked_at !== undefined && Number.isFinite(state.checked_at)) {
        // A checked_at in the future (the clock was stepped back) counts as now, never as fresher;
        // one before 1970 (no relay wrote it) as 1970, long ago: a Date out of range made status() throw.
        const checkedMs = Math.max(0, Math.min(state.checked_at * 1000, this.#opts.clock.now().getTime()));
        this.#lastSuccess = new Date(checkedMs);
        this.#savedCheckedAt = checkedMs;
        this.#freshAt = monotonicMs() - (this.#opts.clock.now().getTime() - checkedMs);
      }
      this.#prune();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.#opts.logger.warn('revocation state unreadable; starting from the beginning', { err });
      // What was known and when it was last answered are lost: as answered long ago (maxStaleMs),
      // not as answered now, which gave a relay that cannot reach the control plane its whole
      // bound again, knowing no revocation at all.
      this.#revoked.clear();
      this.#cursor = undefined;
      this.#freshAt = -Infinity;
    }
  }

  start(): void {
    this.#running = true;
    this.#armStale();
    const tick = () => {
      if (!this.#running) return;
      const started = Date.now();
      this.#polling = this.#poll(this.#opts.waitMs ?? 0)
        .catch((err: unknown) => {
          // #poll takes the control plane's failures itself; what reaches here was thrown by a
          // callback (onCredential closing the relay's connections). The next poll is scheduled
          // all the same: a feed that stopped would never learn another revocation, nor that the
          // credential is accepted again.
          this.#opts.logger.error('revocation feed: a callback failed; polling goes on', { err, stack: err instanceof Error ? err.stack : undefined });
          return false;
        })
        .then((news) => {
          this.#polling = undefined;
          if (!this.#running) return;
          const delay = news ? 0 : this.#failing ? this.retryDelay() : Math.max(0, this.#opts.intervalMs - (Date.now() - started));
          this.#timer = setTimeout(tick, delay);
          this.#timer.unref();
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    this.#abort.abort();
    await this.#polling;
  }

  /**
   * The wait before the poll after a failed one, counted from the failure: drawn between half and
   * all of `intervalMs` (a new draw on each call), never under the failure's Retry-After as far as
   * `intervalMs` goes (spreadWait). Every relay holds a long poll at all times, so a control plane
   * that restarts fails them all in the same millisecond; counted from each poll's start, as before,
   * the next one (held past `intervalMs`) went at once, and each one after it, failing at once,
   * `intervalMs` later: a hundred relays asked together, every second, until it answered.
   * A Retry-After past `intervalMs` does not hold the feed longer: the relay must learn
   * revocations as soon as the control plane answers.
   */
  retryDelay(): number {
    return spreadWait(this.#opts.intervalMs, this.#opts.random ?? Math.random, this.#retryAfterMs);
  }

  /** One round: fetch every page after the cursor and apply it. Never throws. */
  async pollOnce(): Promise<void> {
    await this.#poll(0);
  }

  /**
   * Fetches the pages after the cursor (one long poll of `waitMs`, or all of them without) and
   * applies them. Resolves true when a revocation not known yet arrived or the cursor moved; false otherwise.
   */
  async #poll(waitMs: number): Promise<boolean> {
    // Out of service for a refused credential: read every page at once, not one page per long
    // poll, so that the relay comes back as soon as it knows all revocations it missed. After a
    // failed poll likewise: the first poll that the control plane answers says at once that the
    // feed is reachable again (health and log), not once a long poll it holds ends (20 s).
    if (this.#credentialRejected || this.#failing || this.#stale) waitMs = 0;
    let changed = false;
    let pruned = false;
    let checked = false;
    this.#retryAfterMs = undefined;
    try {
      // Whether the last page read was the feed's end (empty, or the cursor stayed).
      let caughtUp = false;
      for (let page = 0; page < 100; page++) {
        // stop() ends a catch-up between pages and in the middle of one, as it ends a long poll.
        if (this.#abort.signal.aborted) break;
        const feed = await this.#opts.client.revocations(this.#cursor, waitMs, this.#abort.signal);
        for (const r of feed.revocations) {
          if (!this.#revoked.has(r.lease_id)) changed = true;
          this.#revoked.set(r.lease_id, r.exp);
          this.#opts.onRevoked(r.lease_id);
        }
        const moved = feed.cursor !== this.#cursor;
        if (moved) changed = true;
        this.#cursor = feed.cursor;
        caughtUp = feed.revocations.length === 0 || !moved;
        // A long poll is answered at once while there are pages left: start() asks again at once
        // after news, with the long timeout (a plain request can time out behind a busy database).
        if (waitMs > 0 || caughtUp) break;
      }
      if (this.#abort.signal.aborted) return false; // stopping: nothing more is decided (what was read is saved below)
      if (this.#failing) this.#opts.logger.info('revocation feed reachable again');
      this.#failing = false;
      // A relay out of service for a refused credential comes back only once it has read the
      // feed to its end: revocations made meanwhile may fill several pages (start() asks again
      // at once after news).
      if (caughtUp || !this.#credentialRejected) this.#credential(true);
      this.#lastSuccess = this.#opts.clock.now();
      this.#freshAt = monotonicMs();
      checked = this.#lastSuccess.getTime() - this.#savedCheckedAt >= Math.min(CHECKED_SAVE_MS, (this.#opts.maxStaleMs ?? Infinity) / 2);
      // Back in service only once every revocation made meanwhile is known (as after a refused credential).
      if (caughtUp) this.#setStale(false);
      if (this.#running) this.#armStale();
      pruned = this.#prune();
      return changed;
    } catch (err) {
      if (this.#abort.signal.aborted) return false; // stopping
      // Unreachable is a wait; a refused credential is for good (the relay says so, onCredential).
      const refused = err instanceof ControlError && err.opts.status === 401;
      if (err instanceof ControlError) this.#retryAfterMs = err.opts.retryAfterMs;
      // A 400 API_LEVEL_UNSUPPORTED (a control plane older than this relay) is no outage: /healthz
      // and the line name the control plane's code.
      this.#lastError = (err instanceof ControlError ? (err.opts.problemCode ?? err.code) : undefined) ?? 'POLL_FAILED';
      if (!this.#failing && !refused) this.#opts.logger.warn('revocation feed unreachable; keeping known revocations', { err, problemCode: this.#lastError });
      this.#failing = true;
      if (refused) this.#credential(false);
      return false;
    } finally {
      // What the pages read brought is written, also when stop() or a failure ended the round
      // (they were applied): a restart that cannot reach the control plane starts from the file.
      if (changed || pruned || checked) await this.#save();
    }
  }

  /** Sets the timer that turns the feed stale `maxStaleMs` after the last answered poll; turns it stale now when that is past. */
  #armStale(): void {
    const max = this.#opts.maxStaleMs;
    if (max === undefined) return;
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    this.#staleTimer = undefined;
    const left = this.#freshAt + max - monotonicMs();
    if (left <= 0) {
      this.#setStale(true);
      return;
    }
    // Node fires a delay past MAX_TIMER_MS after 1 ms (with a warning): a bound of weeks re-armed
    // itself every millisecond. The timer re-arms for what is left when it fires.
    this.#staleTimer = setTimeout(() => {
      this.#staleTimer = undefined;
      if (this.#running) this.#armStale();
    }, Math.min(left, MAX_TIMER_MS));
    this.#staleTimer.unref();
  }

  #setStale(stale: boolean): void {
    if (this.#stale === stale) return;
    this.#stale = stale;
    try {
      this.#opts.onStale?.(stale);
    } catch (err) {
      // The state has changed all the same (isRevoked and status() say so); the relay's admit
      // check reads it. A throw here must not stop the timer or the poll that called.
      this.#opts.logger.error('revocation feed: the stale callback failed', { err, stack: err instanceof Error ? err.stack : undefined });
    }
  }

  #credential(accepted: boolean): void {
    if (this.#credentialRejected === !accepted) return;
    this.#credentialRejected = !accepted;
    this.#opts.onCredential?.(accepted);
  }

  #prune(): boolean {
    const now = Math.floor(this.#opts.clock.now().getTime() / 1000);
    let pruned = false;
    for (const [id, exp] of this.#revoked) {
      if (exp < now) {
        this.#revoked.delete(id);
        pruned = true;
      }
    }
    return pruned;
  }

  async #save(): Promise<void> {
    const revoked = [...this.#revoked].map(([lease_id, exp]) => ({ lease_id, exp }));
    const checkedAt = this.#lastSuccess?.getTime();
    try {
      await writeFileAtomic(this.#opts.file, JSON.stringify({ cursor: this.#cursor, revoked, checked_at: checkedAt === undefined ? undefined : Math.floor(checkedAt / 1000) }));
      if (checkedAt !== undefined) this.#savedCheckedAt = Math.floor(checkedAt / 1000) * 1000;
    } catch (err) {
      this.#opts.logger.warn('revocation state not written', { err });
    }
  }
}
