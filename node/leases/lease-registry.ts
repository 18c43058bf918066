import { CERT_BACKDATE_SECONDS } from '../../protocol/lease-claims-check.js';
import type { Clock } from '../../shared/clock.js';

export type LeaseEndReason = 'lease_expired' | 'lease_revoked';

/** A live SSH connection as the registry sees it. */
export interface LeaseHolder {
  sessionId: string;
  /**
   * Closes the connection; called at most once. Returns true when this began closing it, false
   * when it was already closing for another reason (the first reason stands).
   */
  close(reason: LeaseEndReason): boolean;
}

interface Entry {
  holder: LeaseHolder;
  /**
   * The leases this connection presented (the original and its renewals) that can still be
   * revoked, each with its expiry (clock ms). The control plane revokes only leases that have not
   * expired (control/services/lease-revocation.ts), so one kept for ever (every renewal added one:
   * about 200 a day per connection at 10-minute leases) could never be named by a revocation
   * again: dropped once REVOCABLE_AFTER_EXPIRY_MS past its expiry.
   */
  leaseIds: Map<string, number>;
  deadline: number;
}

/**
 * How long after its expiry (by the relay's clock) a lease id is kept for revocation: the control
 * plane's clock may lag the relay's by as much as the skew a certificate's start is allowed.
 */
export const REVOCABLE_AFTER_EXPIRY_MS = CERT_BACKDATE_SECONDS * 1000;

/**
 * Revocable leases one connection may hold at once. The CLI renews at two thirds of a lease's
 * life, so it holds two or three; a renewal past this is refused (the connection keeps its
 * deadline), so that what a connection can pin here does not grow with how fast it renews.
 */
export const MAX_LEASES_PER_CONNECTION = 16;

/** Why held bridges are cut (LeaseRegistry.holdLeft): their lease ended, or the relay stops. */
export type LeftCutReason = LeaseEndReason | 'shutdown';

/** What LeaseRegistry.holdLeft keeps for one closed connection. */
interface Held {
  cut: (reason: LeftCutReason) => void;
  leaseIds: string[];
  /** The connection's deadline (clock ms): when its live channels would have been cut. */
  deadline: number;
}

export type AttachResult = { ok: true } | { ok: false; reason: 'too_many_connections' };
export type RenewResult = { ok: true } | { ok: false; reason: 'not_registered' | 'too_many_connections' | 'too_many_leases' };

/**
 * Which connection holds which lease, and until when. Closes connections when their deadline
 * passes (unless renewed in band) or when any lease they presented is revoked (while it can be:
 * see Entry.leaseIds).
 */
export class LeaseRegistry {
  #clock: Clock;
  #maxPerLease: number;
  #entries = new Map<string, Entry>();
  #byLease = new Map<string, Set<string>>();
  /**
   * For connections that have closed with bridges left to deliver what their peer sent before its
   * CLOSE (node/forwarding/direct-channels.ts, bound-exposures.ts): what cuts them, by each lease
   * the connection presented, and all of them (for their deadlines). revoke() and sweep() run them
   * as they close a live connection, so a revocation or an expiry ends those too, at once, instead
   * of when they finish or at --send-stall-timeout. Not connections: they count against no lease's
   * limit.
   */
  #left = new Map<string, Set<Held>>();
  #held = new Set<Held>();
  #timer: NodeJS.Timeout | undefined;
  /** When the timer fires (clock ms), while it is set. */
  #timerAt = Infinity;
  #closed = false;

  constructor(opts: { clock: Clock; maxConnectionsPerLease: number }) {
    this.#clock = opts.clock;
    this.#maxPerLease = opts.maxConnectionsPerLease;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Closed connections whose left bridges are still delivering (holdLeft, not yet released or cut): a draining relay waits for them. */
  get leftHeld(): number {
    return this.#held.size;
  }

  attach(holder: LeaseHolder, lease: { leaseId: string; deadline: Date }): AttachResult {
    const holders = this.#byLease.get(lease.leaseId);
    if (holders && holders.size >= this.#maxPerLease) return { ok: false, reason: 'too_many_connections' };
    this.#entries.set(holder.sessionId, { holder, leaseIds: new Map([[lease.leaseId, lease.deadline.getTime()]]), deadline: lease.deadline.getTime() });
    this.#index(holder.sessionId, lease.leaseId);
    this.#arm(lease.deadline.getTime());
    return { ok: true };
  }

  /**
   * Extends a connection's deadline with a renewed lease; live channels are not touched. The
   * renewed lease is held to maxConnectionsPerLease as at attach: renewing into a lease other
   * connections already hold must not carry more of them than connecting with it could.
   */
  renew(sessionId: string, lease: { leaseId: string; deadline: Date }): RenewResult {
    const e = this.#entries.get(sessionId);
    if (!e) return { ok: false, reason: 'not_registered' };
    const holders = this.#byLease.get(lease.leaseId);
    if (holders && !holders.has(sessionId) && holders.size >= this.#maxPerLease) return { ok: false, reason: 'too_many_connections' };
    this.#forgetExpired(sessionId, e);
    const exp = lease.deadline.getTime();
    if (!e.leaseIds.has(lease.leaseId) && e.leaseIds.size >= MAX_LEASES_PER_CONNECTION) return { ok: false, reason: 'too_many_leases' };
    e.deadline = Math.max(e.deadline, exp);
    e.leaseIds.set(lease.leaseId, Math.max(e.leaseIds.get(lease.leaseId) ?? exp, exp));
    this.#index(sessionId, lease.leaseId);
    return { ok: true };
  }

  /** Lease ids the connection holds for revocation now (see Entry.leaseIds). */
  leaseIdsOf(sessionId: string): string[] {
    return [...(this.#entries.get(sessionId)?.leaseIds.keys() ?? [])];
  }

  /** Drops the connection's lease ids no revocation can name any more (see Entry.leaseIds). */
  #forgetExpired(sessionId: string, e: Entry): void {
    const before = this.#clock.now().getTime() - REVOCABLE_AFTER_EXPIRY_MS;
    for (const [id, exp] of e.leaseIds) {
      if (exp > before) continue;
      e.leaseIds.delete(id);
      this.#unindex(sessionId, id);
    }
  }

  /**
   * Before `detach` of a connection that closed with bridges left: `cut` ends them, and runs (once)
   * if, before the returned release is called (when the last of them has closed), one of the
   * leases it presented is revoked, its deadline passes (the expiry that would have closed it
   * live: a removed grant stops working at once, whatever it carries), or the registry closes
   * (closed already: it runs now). Nothing when the connection is not attached.
   */
  holdLeft(sessionId: string, cut: (reason: LeftCutReason) => void): () => void {
    const e = this.#entries.get(sessionId);
    if (!e) return () => {};
    if (this.#closed) {
      // The stop's cut (close()) ran before this connection closed: nothing would run this one.
      cut('shutdown');
      return () => {};
    }
    const held: Held = { cut, leaseIds: [...e.leaseIds.keys()], deadline: e.deadline };
    for (const id of held.leaseIds) {
      let set = this.#left.get(id);
      if (!set) this.#left.set(id, (set = new Set()));
      set.add(held);
    }
    this.#held.add(held);
    this.#arm(held.deadline);
    return () => this.#drop(held);
  }

  /** Forgets `held` (released, or about to be cut): nothing runs its cut after this. */
  #drop(held: Held): void {
    this.#held.delete(held);
    for (const id of held.leaseIds) {
      const set = this.#left.get(id);
      set?.delete(held);
      if (set?.size === 0) this.#left.delete(id);
    }
  }

  detach(sessionId: string): void {
    const e = this.#entries.get(sessionId);
    if (!e) return;
    this.#entries.delete(sessionId);
    for (const id of e.leaseIds.keys()) this.#unindex(sessionId, id);
    // The timer may now fire early for a deadline that left; the sweep then finds nothing due and
    // re-arms. Rescanning here would make revoking n connections cost n^2.
    if (this.#entries.size === 0 && this.#held.size === 0) this.#disarm();
  }

  deadlineOf(sessionId: string): Date | undefined {
    const e = this.#entries.get(sessionId);
    return e ? new Date(e.deadline) : undefined;
  }

  /**
   * Closes every connection that presented `leaseId`, and cuts the bridges closed ones that did
   * left (holdLeft). Returns how many connections this began closing (one already closing for
   * another reason is let go, not counted).
   */
  revoke(leaseId: string): number {
    let closed = 0;
    for (const id of [...(this.#byLease.get(leaseId) ?? [])]) if (this.#end(id, 'lease_revoked')) closed++;
    this.#cut([...(this.#left.get(leaseId) ?? [])], 'lease_revoked');
    return closed;
  }

  /** Runs the cuts of `helds`, each dropped first (once; a cut that releases it finds it gone). */
  #cut(helds: Held[], reason: LeftCutReason): void {
    for (const held of helds) this.#drop(held);
    for (const held of helds) held.cut(reason);
  }

  /**
   * Closes connections whose deadline has passed, and cuts the bridges closed ones left whose
   * deadline has (holdLeft). Returns how many connections this began closing (as revoke).
   */
  sweep(): number {
    const now = this.#clock.now().getTime();
    const due: string[] = [];
    let next = Infinity;
    for (const e of this.#entries.values()) {
      if (e.deadline <= now) due.push(e.holder.sessionId);
      else next = Math.min(next, e.deadline);
    }
    const dueLeft: Held[] = [];
    for (const held of this.#held) {
      if (held.deadline <= now) dueLeft.push(held);
      else next = Math.min(next, held.deadline);
    }
    let closed = 0;
    for (const id of due) if (this.#end(id, 'lease_expired')) closed++;
    this.#cut(dueLeft, 'lease_expired');
    this.#disarm();
    this.#arm(next);
    return closed;
  }

  /**
   * The relay stops: the bridges closed connections left end now (holdLeft). Ending the open
   * connections ends only those into them; one into an egress target that reads nothing went on
   * past the stop, and its connection's conn_close came after the relay's last event flush.
   */
  close(): void {
    this.#closed = true;
    this.#disarm();
    this.#cut([...this.#held], 'shutdown');
  }

  #index(sessionId: string, leaseId: string): void {
    let set = this.#byLease.get(leaseId);
    if (!set) this.#byLease.set(leaseId, (set = new Set()));
    set.add(sessionId);
  }

  #unindex(sessionId: string, leaseId: string): void {
    const set = this.#byLease.get(leaseId);
    set?.delete(sessionId);
    if (set?.size === 0) this.#byLease.delete(leaseId);
  }

  /** True when this began closing the connection (see LeaseHolder.close). */
  #end(sessionId: string, reason: LeaseEndReason): boolean {
    const e = this.#entries.get(sessionId);
    if (!e) return false;
    this.detach(sessionId);
    return e.holder.close(reason);
  }

  /**
   * One timer for the nearest deadline: moved earlier when a sooner deadline arrives, never
   * rescanned on attach or detach (sweep finds the next one). Capped so that a wall-clock jump is
   * noticed within a minute.
   */
  #arm(deadline: number): void {
    if (this.#closed || (this.#entries.size === 0 && this.#held.size === 0) || deadline === Infinity) return;
    const now = this.#clock.now().getTime();
    const at = Math.min(deadline, now + 60_000);
    if (this.#timer && this.#timerAt <= at) return;
    this.#disarm();
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.sweep(), Math.max(0, at - now) + 5);
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }
}
