/**
 * Wakes relays' long polls of the revocation feed (GET /v1/nodes/self/revocations?wait=S).
 *
 * The feed in the database stays the only source of truth (cursor, pages, restarts); the hub
 * only shortens the time until a relay hears of a revocation. Two signals:
 * - `publish`: revocations committed by this replica, handed to the waiting polls of their
 *   nodes as they are (no database read on the way: a saturated embedded database queues every
 *   query behind the writes that caused the revocations, which made relays learn of them
 *   seconds late, issue 11). The relay applies them and reads the feed again, where the same
 *   entries come back with the cursor (at least once, duplicates harmless).
 * - `poke`: another replica revoked leases of these nodes (Postgres NOTIFY); the waiting polls
 *   read the database again.
 *
 * Bounded: at most `maxWaitersPerNode` polls wait per node and `maxWaiters` in all (a poll
 * beyond that is answered at once, like a plain poll), and at most `maxBuffered` entries are
 * buffered per waiting poll (beyond that it is woken to read the database instead), never more
 * than an answer may carry beside one database page (FEED_PAGE_MAX_ENTRIES - FEED_PAGE_ROWS: a
 * relay refuses a longer answer).
 *
 * A node's credential replaced (the node enrolled again): `evict` ends the polls held with any
 * other credential at once (they are answered 401 and get nothing more), here and, through the
 * same NOTIFY channel, on the other replicas.
 */

import { FEED_PAGE_MAX_ENTRIES, FEED_PAGE_ROWS } from '../../protocol/node-api-check.js';

export interface PushedRevocation {
  lease_id: string;
  /** The lease's own expiry, seconds since the epoch. */
  exp: number;
}

export type WaitOutcome = { kind: 'pushed'; revocations: PushedRevocation[] } | { kind: 'poke' } | { kind: 'evicted' } | { kind: 'timeout' };

export interface FeedWaiter {
  /** Resolves at the first push or poke since the waiter was made (at once if one came already), or after `ms`. */
  next(ms: number): Promise<WaitOutcome>;
  /** Takes what was pushed so far without waiting. */
  take(): PushedRevocation[];
  /** The credential this poll was made with was replaced since: answer 401, nothing else. */
  readonly evicted: boolean;
  /** Leaves the hub (always call it, in a finally). */
  close(): void;
}

export interface RevocationHubOptions {
  maxWaitersPerNode: number;
  maxWaiters: number;
  maxBuffered: number;
}

/** Entries one poll may buffer, at most: the answer's room beside a database page (a larger `maxBuffered` is refused). */
export const MAX_BUFFERED = FEED_PAGE_MAX_ENTRIES - FEED_PAGE_ROWS;

export const DEFAULT_HUB_OPTIONS: RevocationHubOptions = { maxWaitersPerNode: 4, maxWaiters: 10_000, maxBuffered: 1000 };

interface Waiter {
  /** The credential the poll came with (its hash), for evict(). */
  credential: string;
  evicted: boolean;
  buffered: PushedRevocation[];
  poked: boolean;
  wake: (() => void) | undefined;
}

export class RevocationHub {
  #opts: RevocationHubOptions;
  #byNode = new Map<string, Set<Waiter>>();
  #count = 0;
  #closed = false;

  constructor(opts: Partial<RevocationHubOptions> = {}) {
    const o = { ...DEFAULT_HUB_OPTIONS, ...opts };
    // Refused, not clamped: a caller asking for more would believe its polls buffer it.
    if (!Number.isSafeInteger(o.maxBuffered) || o.maxBuffered < 0 || o.maxBuffered > MAX_BUFFERED) {
      throw new RangeError(`maxBuffered must be an integer from 0 to ${MAX_BUFFERED} (an answer carries at most ${FEED_PAGE_MAX_ENTRIES} entries, ${FEED_PAGE_ROWS} of them a database page)`);
    }
    this.#opts = o;
  }

  /** True once close() was called (the server is shutting down). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The longest a poll may be held now (ms; services/nodes.ts revocationFeed): Infinity, or
   * revocation-listen.ts's DEAF_HOLD_MS while this replica's LISTEN hears nothing (another
   * replica's revocation could not wake the poll).
   */
  holdCapMs = Infinity;

  /** Polls waiting now (metrics, tests). */
  get waiting(): number {
    return this.#count;
  }

  /** A waiter for `nodeId`'s feed, or undefined when the bounds are reached (answer without waiting). */
  waiter(nodeId: string, credential = ''): FeedWaiter | undefined {
    const set = this.#byNode.get(nodeId);
    if (this.#closed || this.#count >= this.#opts.maxWaiters || (set?.size ?? 0) >= this.#opts.maxWaitersPerNode) return undefined;
    const w: Waiter = { credential, evicted: false, buffered: [], poked: false, wake: undefined };
    if (set) set.add(w);
    else this.#byNode.set(nodeId, new Set([w]));
    this.#count++;
    let closed = false;
    return {
      next: (ms) =>
        new Promise<WaitOutcome>((resolve) => {
          const settle = () => {
            clearTimeout(timer);
            w.wake = undefined;
            if (w.evicted) resolve({ kind: 'evicted' });
            else if (w.buffered.length) resolve({ kind: 'pushed', revocations: w.buffered.splice(0) });
            else if (w.poked) {
              w.poked = false;
              resolve({ kind: 'poke' });
            } else resolve({ kind: 'timeout' });
          };
          const timer = setTimeout(settle, Math.max(0, ms));
          w.wake = settle;
          if (closed || w.evicted || w.buffered.length || w.poked) settle();
        }),
      take: () => w.buffered.splice(0),
      get evicted() {
        return w.evicted;
      },
      close: () => {
        if (closed) return;
        closed = true;
        w.wake?.();
        const s = this.#byNode.get(nodeId);
        if (s?.delete(w)) this.#count--;
        if (s?.size === 0) this.#byNode.delete(nodeId);
      },
    };
  }

  /**
   * Shutting down: every waiting poll is answered now (from the database) and no new one waits,
   * so the HTTP server's close does not wait out held polls.
   */
  close(): void {
    this.#closed = true;
    for (const set of this.#byNode.values()) for (const w of set) w.wake?.();
  }

  /** Revocations of `nodeId` this replica committed: to every poll of that node waiting now. */
  publish(nodeId: string, revocations: readonly PushedRevocation[]): void {
    const set = this.#byNode.get(nodeId);
    if (!set || revocations.length === 0) return;
    for (const w of set) {
      if (w.evicted) continue;
      if (w.buffered.length + revocations.length > this.#opts.maxBuffered) w.poked = true; // too many: read the database
      else w.buffered.push(...revocations);
      w.wake?.();
    }
  }

  /** Another replica revoked leases of these nodes (or of many: 'all'): their waiting polls read the database again. */
  poke(nodeIds: Iterable<string> | 'all'): void {
    for (const id of nodeIds === 'all' ? [...this.#byNode.keys()] : nodeIds) {
      for (const w of this.#byNode.get(id) ?? []) {
        w.poked = true;
        w.wake?.();
      }
    }
  }

  /**
   * `nodeId` has a new credential (its hash: `keep`): every poll of it held with another one ends
   * now, with nothing handed over (the route answers 401).
   */
  evict(nodeId: string, keep: string): void {
    for (const w of this.#byNode.get(nodeId) ?? []) {
      if (w.credential === keep) continue;
      w.evicted = true;
      w.buffered = [];
      w.wake?.();
    }
  }
}
