import type { AuthContext } from 'ssh2';
import type { ConnectionEvent } from '../../protocol/node-api.js';
import { isLeaseId } from '../../protocol/lease-claims-check.js';
import { loggable, type Logger } from '../../shared/logger.js';
import type { CloseReason } from '../close-reasons.js';
import type { FaultPoint } from '../fault-guard.js';
import type { LeaseEndReason } from '../leases/lease-registry.js';
import type { RelayContext } from '../relay-context.js';
import { verifySessionSignature, type ClientKey, type VerifiedLease } from './verify-client-cert.js';

/** What one connection's authentication takes from its connection (node/connection.ts). */
export interface ConnectionAuthOptions {
  ctx: Pick<RelayContext, 'config' | 'metrics' | 'auth' | 'rateLimiter' | 'registry' | 'memberConnections'>;
  sessionId: string;
  /** The peer's address: failures count against it in the per-source limiter. */
  ip: string;
  log: Logger;
  /** True once the connection began closing (`end`). */
  ending(): boolean;
  /** True once the connection closed. */
  closed(): boolean;
  /** Test-only fault injection (`--test-fault`). */
  inject(point: FaultPoint): void;
  /**
   * Reports a connection event to the control plane, as one of `member`'s (a lease subject; its
   * share of the event queue, EventReporter.push) when the connection's credential was valid.
   */
  event(e: Omit<ConnectionEvent, 'at' | 'session_id' | 'remote'>, member?: string): void;
  end(reason: CloseReason): void;
  /**
   * The lease registry closes the connection (its lease revoked, expired, ...); run through the
   * connection's FaultGuard. Made by the connection: the registry keeps it, and a closure over
   * these options would keep them all (and this object) for the connection's life. Returns true
   * when this began closing the connection, false when it was already closing.
   */
  leaseEnd: (reason: LeaseEndReason) => boolean;
  /**
   * Authenticated: the connection holds `lease` from now on (attached in the registry), and one of
   * its member's connections (--max-connections-per-member) until `releaseMember` at its close.
   */
  setLease(lease: VerifiedLease, releaseMember?: () => void): void;
}

/**
 * One connection's SSH authentication (ssh2's 'authentication' event): a lease certificate's
 * public key, its signature, its place in the lease registry; every failure counted, logged,
 * reported, and past --max-auth-attempts the connection closed.
 */
export class ConnectionAuth {
  readonly #o: ConnectionAuthOptions;
  #username = '';
  #attempts = 0;
  #noneAsked = false;
  /**
   * The key of the last publickey query (an attempt without a signature) that was accepted, and
   * its lease. Clients ask first and then sign (RFC 4252 section 7: OpenSSH, PuTTY, ssh2 do): the
   * signed attempt with the same key and user takes this lease after `stillValid`, instead of
   * verifying the certificate's and the lease's signatures a second time (about a sixth of the
   * relay's CPU per connection setup, issue 11's bench:load profile). One at a time; kept until
   * the next attempt.
   */
  #queried: (ClientKey & { lease: VerifiedLease }) | undefined;

  constructor(o: ConnectionAuthOptions) {
    this.#o = o;
  }

  /** The user name of the last publickey attempt ('' before one). */
  get username(): string {
    return this.#username;
  }

  async authenticate(actx: AuthContext): Promise<void> {
    const o = this.#o;
    // Requests the client sent before it saw our DISCONNECT are not answered (nor counted).
    if (o.ending()) return;
    const queried = this.#queried;
    this.#queried = undefined;
    if (actx.method !== 'publickey') {
      // A client's first `none` asks which methods exist; like sshd, only that one is free.
      // Every other none, password, keyboard-interactive or hostbased attempt is a failure:
      // it counts against --max-auth-attempts and the per-source limiter.
      if (actx.method === 'none' && !this.#noneAsked) {
        this.#noneAsked = true;
        actx.reject(['publickey']);
        return;
      }
      return this.#fail(actx, 'method_not_allowed', {});
    }
    this.#username = actx.username;
    o.inject('authentication');
    const key: ClientKey = { algo: actx.key.algo, blob: actx.key.data, username: actx.username };
    const result =
      queried && actx.signature && sameKey(queried, key) && o.ctx.auth.stillValid(queried.lease)
        ? ({ ok: true, lease: queried.lease } as const)
        : await o.ctx.auth.verify(key);
    if (o.closed()) return;
    if (!result.ok) return this.#fail(actx, result.reason, result);
    const lease = result.lease;
    if (!actx.signature) {
      // The key is acceptable; the client proves possession next. The blob is copied: ssh2's is
      // a view of the packet it came in.
      this.#queried = { ...key, blob: Buffer.from(key.blob), lease };
      actx.accept();
      return;
    }
    if (!actx.blob || !verifySessionSignature(lease, actx.blob, actx.signature)) {
      return this.#fail(actx, 'signature_invalid', lease);
    }
    // One of the member's connections, all its leases together (node/per-member-limit.ts).
    const member = o.ctx.memberConnections.take(lease.claims.sub);
    // Refused for capacity, not for a bad credential: not counted against the source address,
    // whose limiter would then refuse everyone behind the same NAT.
    if (!member) return this.#fail(actx, 'too_many_member_connections', lease, lease.claims.sub);
    const attached = o.ctx.registry.attach({ sessionId: o.sessionId, close: o.leaseEnd }, lease);
    if (!attached.ok) {
      member();
      return this.#fail(actx, attached.reason, lease, lease.claims.sub);
    }
    o.setLease(lease, member);
    actx.accept();
  }

  /**
   * `member`: a valid credential of that member refused for capacity, which the source's limiter
   * does not count, and whose event is the member's.
   */
  #fail(actx: AuthContext, reason: string, ids: { leaseId?: string; serial?: string; fingerprint?: string }, member?: string): void {
    const o = this.#o;
    this.#attempts++;
    o.ctx.metrics.authFailures.inc({ reason });
    if (member === undefined) o.ctx.rateLimiter.recordFailure(o.ip);
    // The user, method and algorithm names are the client's text (up to a packet, 35 KB, with no
    // account): logged cut short, as sshd does.
    o.log.warn('authentication refused', {
      reason,
      user: loggable(actx.username, 256),
      method: loggable(actx.method, 64),
      algo: actx.method === 'publickey' ? loggable(actx.key.algo, 64) : undefined,
      leaseId: ids.leaseId,
      serial: ids.serial,
      fingerprint: ids.fingerprint,
    });
    // Only a lease id goes to the control plane (the certificate's key id need not be one): it
    // refuses an event outside its schema (ConnectionEventSchema; a lease_id over 128 characters,
    // say) on its own, the rest of the batch recorded, and this failure would go unrecorded.
    o.event({ type: 'auth_fail', reason, lease_id: isLeaseId(ids.leaseId) ? ids.leaseId : undefined }, member);
    actx.reject(['publickey']);
    if (this.#attempts >= o.ctx.config.limits.authAttempts) o.end('too_many_auth_attempts');
  }
}

function sameKey(a: ClientKey, b: ClientKey): boolean {
  return a.algo === b.algo && a.username === b.username && a.blob.equals(b.blob);
}
