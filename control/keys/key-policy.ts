/** Timings of key rotation (seconds). */
export interface KeyPolicy {
  /** A key signs for this long before a successor is scheduled. */
  rotateAfter: number;
  /** A successor is published this long before it signs (> the relays' JWKS refresh interval). */
  publishLead: number;
  /** The longest anything signed can live (max lease TTL, refresh of access tokens) plus skew. */
  maxSignedLifetime: number;
}

export const DEFAULT_KEY_POLICY: KeyPolicy = {
  rotateAfter: 30 * 86400,
  publishLead: 15 * 60,
  maxSignedLifetime: 24 * 3600 + 120,
};

/**
 * The policy for a control plane whose leases live up to `maxLeaseTtl` seconds: a retired key
 * stays published until the longest lease it may have signed has expired (plus backdating and skew).
 */
export function keyPolicyFor(maxLeaseTtl: number): KeyPolicy {
  return { ...DEFAULT_KEY_POLICY, maxSignedLifetime: Math.max(DEFAULT_KEY_POLICY.maxSignedLifetime, maxLeaseTtl + 120) };
}
