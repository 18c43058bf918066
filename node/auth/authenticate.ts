import type { LeaseClaims } from '../../protocol/lease-claims.js';
import type { Clock } from '../../shared/clock.js';
import type { JwksCache } from '../trust/jwks-cache.js';
import { stillTrusted, verifyClientCertificate, type ClientKey, type VerifiedLease, type VerifyResult } from './verify-client-cert.js';

export interface Authenticator {
  /**
   * Verifies a client certificate; on an unknown CA or lease key, refreshes trust once (rate
   * limited) and retries. With `wait: false` it does not wait for that refresh: it starts it and
   * answers with the refusal (an in-band renewal must not wait on the network, see LeaseRenewal
   * in node/leases/lease-renewal.ts).
   */
  verify(key: ClientKey, o?: { wait?: boolean }): Promise<VerifyResult>;
  /**
   * Whether a lease that `verify` accepted moments ago would still pass, checked without its
   * signatures: the keys that vouched for it still trusted, the lease not revoked, neither it nor
   * its certificate expired. False means: verify afresh (which gives the reason).
   */
  stillValid(lease: VerifiedLease): boolean;
}

export function createAuthenticator(deps: {
  clock: Clock;
  trust: JwksCache;
  identity: { nodeId: string; issuer: string };
  isRevoked(leaseId: string): boolean;
}): Authenticator {
  const run = (key: ClientKey) =>
    verifyClientCertificate(key, {
      now: deps.clock.now(),
      trust: deps.trust.snapshot,
      issuer: deps.identity.issuer,
      nodeId: deps.identity.nodeId,
      isRevoked: deps.isRevoked,
    });
  return {
    async verify(key, o = {}) {
      const first = await run(key);
      if (first.ok || !(first.unknownKey || first.reason === 'no_trust')) return first;
      if (o.wait === false) {
        void deps.trust.refreshForUnknownKey();
        return first;
      }
      return (await deps.trust.refreshForUnknownKey()) ? run(key) : first;
    },
    stillValid(lease) {
      return stillTrusted(lease, deps.trust.snapshot) && !deps.isRevoked(lease.leaseId) && deps.clock.now().getTime() < lease.deadline.getTime();
    },
  };
}

/**
 * A renewal must continue the same grant: same subject, same certified key, same kind and
 * same exposure, port or targets. Returns why not, or undefined when it does.
 */
export function renewalMismatch(current: VerifiedLease, next: VerifiedLease): string | undefined {
  if (next.claims.sub !== current.claims.sub) return 'subject';
  if (next.fingerprint !== current.fingerprint) return 'key';
  if (!sameGrant(current.claims, next.claims)) return 'grant';
  return undefined;
}

function sameGrant(a: LeaseClaims, b: LeaseClaims): boolean {
  if (a.kind === 'expose' && b.kind === 'expose') return a.exposure === b.exposure && a.port === b.port;
  if (a.kind === 'open' && b.kind === 'open') return a.exposure === b.exposure;
  if (a.kind === 'egress' && b.kind === 'egress') return JSON.stringify(a.targets) === JSON.stringify(b.targets);
  return false;
}
