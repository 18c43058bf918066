import { arr, byKey, num, obj, oneOf, read, str, type Check } from './check.js';
import type { LeaseClaims } from './lease-claims.js';
import { HOST_RE } from './patterns.js';

/**
 * The lease's names and patterns (lease-claims.ts holds its claims' zod schemas and re-exports
 * these), and the relay's plain check of the claims: tunnel-node reads lease tokens without zod
 * (issue 11, idle relay RSS; protocol/check.ts). protocol/relay-checks.test compares
 * checkLeaseClaims with LeaseClaimsSchema on the same inputs.
 */

export const LEASE_KINDS = ['expose', 'open', 'egress'] as const;

/**
 * How a relay enforces egress leases: `iptables` (the kernel lock), or `off` (the relay checks
 * targets itself only; reported loudly). Relays report it in their heartbeat.
 */
export const EGRESS_DRIVERS = ['iptables', 'off'] as const;
export type EgressDriver = (typeof EGRESS_DRIVERS)[number];
export const isEgressDriver = (s: unknown): s is EgressDriver => EGRESS_DRIVERS.includes(s as EgressDriver);

/** Lease ids: `lse_` and 32 hex digits (the token's `jti`, the relays' revocation feed, `/v1/leases/{id}`). */
export const LEASE_ID_PREFIX = 'lse';
export const LEASE_ID_RE = /^lse_[a-f0-9]{32}$/;
export const isLeaseId = (s: unknown): s is string => typeof s === 'string' && LEASE_ID_RE.test(s);

/** JWS `typ` header of lease tokens, so no other token kind can pass as a lease. */
export const LEASE_TOKEN_TYP = 'tunnel-lease+jwt';
/** JWS `typ` header of control-plane access tokens. */
export const ACCESS_TOKEN_TYP = 'at+jwt';
/** Extension name in the certificate whose value (an SSH string) is the lease token. */
export const LEASE_CERT_EXTENSION = 'lease@tunnel';
export const PERMIT_PORT_FORWARDING = 'permit-port-forwarding';
/** How far a certificate's validity is backdated for clock skew, at most. */
export const CERT_BACKDATE_SECONDS = 60;
/**
 * A lease's times (`iat`, `nbf`, `exp`, unix seconds) lie between 1970 and the end of 9999, as
 * every instant of the API (primitives.ts's instant): what a relay makes of them (a deadline
 * Date, a timer, a log line, a kernel deadline) must exist. A safe integer of seconds can be
 * a thousand times past the last JavaScript Date (8.64e12 s).
 */
export const LEASE_TIME_MAX = 253_402_300_799;

/** Exposure names: `[a-z0-9-]{1,63}` (DESIGN "Exposures, names and nodes"). */
export const EXPOSURE_NAME_RE = /^[a-z0-9-]{1,63}$/;
/** The claims' SSH key: a SHA256 fingerprint (`SHA256:...`). */
export const SSH_KEY_FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;

/**
 * The longest of the claims' text (characters): `iss` (the control plane's --public-url), `sub`
 * (user id), `aud` (node id), `jti` (lease id) and `name` (user name, [a-z][a-z0-9._-]{0,63}).
 * lease-size.ts derives the room left for egress targets in a certificate from these.
 */
export const LEASE_CLAIM_MAX = Object.freeze({ iss: 2048, sub: 128, aud: 128, jti: 128, name: 64 });

const port = num({ int: true, min: 1, max: 65535 });
const exposure = str({ re: EXPOSURE_NAME_RE });
const base = {
  iss: str({ min: 1, max: LEASE_CLAIM_MAX.iss }),
  sub: str({ min: 1, max: LEASE_CLAIM_MAX.sub }),
  aud: str({ min: 1, max: LEASE_CLAIM_MAX.aud }),
  jti: str({ min: 1, max: LEASE_CLAIM_MAX.jti }),
  iat: num({ int: true, min: 0, max: LEASE_TIME_MAX }),
  nbf: num({ int: true, min: 0, max: LEASE_TIME_MAX }),
  exp: num({ int: true, min: 0, max: LEASE_TIME_MAX }),
  ssh_key: str({ re: SSH_KEY_FINGERPRINT_RE }),
  name: str({ min: 1, max: LEASE_CLAIM_MAX.name }),
};
const target = obj({ host: str({ min: 1, max: 253, re: HOST_RE }), port }, { strict: true });

const claims = byKey<unknown>('kind', {
  expose: obj({ ...base, kind: oneOf(['expose']), exposure, port }, { strict: true }),
  open: obj({ ...base, kind: oneOf(['open']), exposure }, { strict: true }),
  egress: obj({ ...base, kind: oneOf(['egress']), targets: arr(target, { min: 1, max: 32 }) }, { strict: true }),
}) as Check<LeaseClaims>;

/** A lease token's payload read as claims (LeaseClaimsSchema's rules), or undefined when it is not. */
export function checkLeaseClaims(payload: unknown): LeaseClaims | undefined {
  const r = read(claims, payload);
  return r.ok ? r.value : undefined;
}
