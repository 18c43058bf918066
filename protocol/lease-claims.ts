import { z } from 'zod';
import { HostSchema } from './primitives.js';

/**
 * The lease: the unit of authorization, carried as a compact JWS (EdDSA) inside the
 * `lease@tunnel` extension of an OpenSSH user certificate (DESIGN "Leases and certificates").
 * This file is the only definition of its claims.
 */

export const LEASE_KINDS = ['expose', 'open', 'egress'] as const;
export const LeaseKindSchema = z.enum(LEASE_KINDS);
export type LeaseKind = z.infer<typeof LeaseKindSchema>;

/**
 * How a relay enforces egress leases: `iptables` (the kernel lock), or `off` (the relay checks
 * targets itself only; reported loudly). Relays report it in their heartbeat.
 */
export const EGRESS_DRIVERS = ['iptables', 'off'] as const;
export const EgressDriverSchema = z.enum(EGRESS_DRIVERS);
export type EgressDriver = z.infer<typeof EgressDriverSchema>;
export const isEgressDriver = (s: unknown): s is EgressDriver => EGRESS_DRIVERS.includes(s as EgressDriver);

/** Lease ids: `lse_` and 32 hex digits (the token's `jti`, the relays' revocation feed, `/v1/leases/{id}`). */
export const LEASE_ID_PREFIX = 'lse';
export const LEASE_ID_RE = /^lse_[a-f0-9]{32}$/;
export const LeaseIdSchema = z.string().regex(LEASE_ID_RE, 'must be a lease id (lse_ and 32 hex digits)');
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

/** Exposure names: `[a-z0-9-]{1,63}` (DESIGN "Exposures, names and nodes"). */
export const EXPOSURE_NAME_RE = /^[a-z0-9-]{1,63}$/;
export const ExposureNameSchema = z.string().regex(EXPOSURE_NAME_RE, 'must match [a-z0-9-]{1,63}');
export const PortSchema = z.number().int().min(1).max(65535);

export const LeaseTargetSchema = z.strictObject({
  host: HostSchema,
  port: PortSchema,
});
export type LeaseTarget = z.infer<typeof LeaseTargetSchema>;

const base = {
  iss: z.string().min(1).max(2048),
  sub: z.string().min(1).max(128),
  aud: z.string().min(1).max(128),
  jti: z.string().min(1).max(128),
  iat: z.number().int(),
  nbf: z.number().int(),
  exp: z.number().int(),
  /** SHA256 fingerprint (`SHA256:...`) of the one client public key this lease is bound to. */
  ssh_key: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/),
  /** The user name, which is also the certificate's only principal. */
  name: z.string().min(1).max(64),
};

export const ExposeClaimsSchema = z.strictObject({
  ...base,
  kind: z.literal('expose'),
  exposure: ExposureNameSchema,
  /** The virtual port X may bind for `exposure` (tcpip-forward `exposure:port`). */
  port: PortSchema,
});
export const OpenClaimsSchema = z.strictObject({
  ...base,
  kind: z.literal('open'),
  exposure: ExposureNameSchema,
});
export const EgressClaimsSchema = z.strictObject({
  ...base,
  kind: z.literal('egress'),
  targets: z.array(LeaseTargetSchema).min(1).max(32),
});

export const LeaseClaimsSchema = z.discriminatedUnion('kind', [
  ExposeClaimsSchema,
  OpenClaimsSchema,
  EgressClaimsSchema,
]);
export type LeaseClaims = z.infer<typeof LeaseClaimsSchema>;
export type ExposeClaims = z.infer<typeof ExposeClaimsSchema>;
export type OpenClaims = z.infer<typeof OpenClaimsSchema>;
export type EgressClaims = z.infer<typeof EgressClaimsSchema>;
