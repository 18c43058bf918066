import { decodeLeaseRenew } from '../../protocol/lease-renew.js';
import { CERT_KEY_TYPE } from '../../protocol/ssh-cert.js';
import type { Logger } from '../../shared/logger.js';
import { renewalMismatch } from '../auth/authenticate.js';
import type { VerifiedLease } from '../auth/verify-client-cert.js';
import type { RelayContext } from '../relay-context.js';
import { PerMinuteLimit } from '../per-minute-limit.js';

/** What a connection's in-band lease renewal takes from its connection (node/connection.ts). */
export interface LeaseRenewalOptions {
  ctx: Pick<RelayContext, 'auth' | 'metrics' | 'registry' | 'config' | 'clock'>;
  sessionId: string;
  log: Logger;
  /** The lease the connection holds now; undefined before authentication. */
  lease(): VerifiedLease | undefined;
  /** The user name the connection authenticated with. */
  username(): string;
  /** True once the connection closed. */
  closed(): boolean;
  /** Renewed: the connection holds `lease` from now on. */
  setLease(lease: VerifiedLease): void;
  /** An egress lease's rules enter the firewall (node/egress/egress-lock.ts). */
  activateEgress(lease: VerifiedLease): void;
  /** The peer renews more often than --max-renewals-per-minute: close the connection; true when this began closing it. */
  tooOften(): boolean;
}

/**
 * A connection's in-band lease renewal (the CLI's LEASE_RENEW_REQUEST global request,
 * protocol/lease-renew.ts): a new certificate continuing the same grant replaces the lease the
 * connection holds, in the registry too, without reconnecting.
 */
export class LeaseRenewal {
  readonly #o: LeaseRenewalOptions;
  /**
   * Each renewal costs the relay two Ed25519 verifications (the certificate's CA signature and
   * the lease token's) with their parsing, about 0.45 ms of CPU, and a log line: one member
   * pipelining its own certificate in `lease-renew@tunnel` requests held half a core, and every
   * member could. The CLI renews at most once a second.
   */
  readonly #limit: PerMinuteLimit;

  constructor(o: LeaseRenewalOptions) {
    this.#o = o;
    this.#limit = new PerMinuteLimit(o.ctx.config.limits.renewalsPerMinute, o.ctx.clock);
  }

  async renew(req: { payload: Buffer }, accept: (() => void) | undefined, reject: (() => void) | undefined): Promise<void> {
    const o = this.#o;
    if (!this.#limit.take()) {
      // Counted and logged once, by the request that began closing the connection (those the
      // peer sent with it are dropped).
      if (!o.tooOften()) return;
      o.ctx.metrics.renewals.inc({ result: 'rate_limited' });
      o.log.warn('peer renewed its lease too often; disconnected', { limitPerMinute: o.ctx.config.limits.renewalsPerMinute, leaseId: o.lease()?.leaseId });
      return;
    }
    const current = o.lease();
    const fail = (reason: string, ids: { leaseId?: string; serial?: string } = {}) => {
      o.ctx.metrics.renewals.inc({ result: reason });
      o.log.warn('lease renewal refused', { reason, ...ids });
      reject?.();
    };
    if (!current) return fail('unauthenticated');
    let blob: Buffer;
    try {
      blob = decodeLeaseRenew(req.payload);
    } catch {
      return fail('malformed');
    }
    // Not waiting for a JWKS refresh: ssh2 answers global requests in order, so every request
    // after a renewal waiting on the control plane (up to its timeout) would hold its reply in
    // ssh2's queue, outside the send budget, and the renewal its packet: a member could pile up
    // as many as it could send. A renewal naming a key the relay does not know yet is refused
    // (the refresh starts); the CLI then reconnects, and authentication does wait for it.
    const result = await o.ctx.auth.verify({ algo: CERT_KEY_TYPE, blob, username: o.username() }, { wait: false });
    if (o.closed()) return;
    if (!result.ok) return fail(result.reason, { leaseId: result.leaseId, serial: result.serial });
    const mismatch = renewalMismatch(current, result.lease);
    if (mismatch) return fail(`${mismatch}_mismatch`, { leaseId: result.lease.leaseId, serial: result.lease.serial });
    const renewed = o.ctx.registry.renew(o.sessionId, result.lease);
    if (!renewed.ok) return fail(renewed.reason, { leaseId: result.lease.leaseId, serial: result.lease.serial });
    o.setLease(result.lease);
    if (result.lease.claims.kind === 'egress') o.activateEgress(result.lease);
    o.ctx.metrics.renewals.inc({ result: 'ok' });
    o.log.info('lease renewed', { leaseId: result.lease.leaseId, serial: result.lease.serial, deadline: o.ctx.registry.deadlineOf(o.sessionId)?.toISOString() });
    accept?.();
  }
}
