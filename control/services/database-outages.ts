/**
 * The times this replica found its database unreachable, so that a relay is not judged by time in
 * which no heartbeat could have been stored.
 *
 * A relay is online while its last heartbeat is at most `nodeOnlineWindow` seconds old. While
 * Postgres restarts, every heartbeat is answered 503 and stores nothing; counted in, that time
 * made a live relay, and every exposure on it, read offline once the database was back, until the
 * relay's next heartbeat landed: the control plane called exposures offline (409
 * EXPOSURE_OFFLINE to Y) because of its own outage. Here the window is counted in time the
 * database could be reached: a relay that is really gone still reads offline once that much of it
 * has passed since its last heartbeat, and with no outage that is the plain window.
 *
 * An outage is seen through the requests it failed (http/problem.ts notes each one answered 503
 * DATABASE_UNAVAILABLE): it runs from the first such failure to the last, and failures less than
 * OUTAGE_MERGE_MS apart are one outage. A replica that failed no request during an outage knows
 * nothing of it and judges by the plain window, as before. Per replica, in memory, bounded.
 */

/**
 * Failures this close (ms) are one outage. Clients are told to come back after 2 s (Retry-After,
 * db/unavailable.ts) and relays retry a failed heartbeat at most 4 s later
 * (node/heartbeat-retry.ts), so an outage with anyone asking has no longer quiet stretch.
 */
export const OUTAGE_MERGE_MS = 5000;

/** Outages kept (the newest); forgetting an older one only counts its time against relays again. */
export const MAX_OUTAGES = 32;

/**
 * The most outage time a relay's window is stretched by (ms): a database unreachable for longer,
 * or failing requests on and off for as long (a pool that keeps timing out), does not keep a
 * relay that is really gone online for as long. After a longer outage a live relay reads offline
 * until its next heartbeat, at most HEARTBEAT_RETRY_MAX_MS after the database is back.
 */
export const MAX_CREDIT_MS = 300_000;

export class DatabaseOutages {
  /** Oldest first; `end` is the last failure seen in it (ms since the epoch). */
  #spans: { start: number; end: number }[] = [];

  /** A request found the database unreachable at `at`. */
  noteUnreachable(at: Date): void {
    const t = at.getTime();
    const last = this.#spans.at(-1);
    if (last && t >= last.start - OUTAGE_MERGE_MS && t <= last.end + OUTAGE_MERGE_MS) {
      last.start = Math.min(last.start, t);
      last.end = Math.max(last.end, t);
      return;
    }
    this.#spans.push({ start: t, end: t });
    if (this.#spans.length > MAX_OUTAGES) this.#spans.shift();
  }

  /**
   * The oldest last heartbeat with which a relay is online at `now`: `windowSeconds` of time in
   * which the database could be reached lie between it and `now` (outages not counted). Without
   * an outage in that time, `now` less the window.
   */
  onlineSince(now: Date, windowSeconds: number): Date {
    let cursor = now.getTime();
    let left = windowSeconds * 1000;
    let credit = MAX_CREDIT_MS;
    for (let i = this.#spans.length - 1; i >= 0 && credit > 0; i--) {
      const span = this.#spans[i]!;
      const end = Math.min(span.end, cursor);
      // The window is used up in the reachable time after this outage: it does not matter.
      if (cursor - end >= left) break;
      left -= cursor - end;
      const start = Math.max(Math.min(span.start, end), end - credit);
      credit -= end - start;
      cursor = start;
    }
    return new Date(cursor - left);
  }

  /** Outages remembered now (tests). */
  get count(): number {
    return this.#spans.length;
  }
}
