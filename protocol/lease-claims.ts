import { z } from 'zod';
import { EGRESS_DRIVERS, EXPOSURE_NAME_RE, LEASE_CLAIM_MAX, LEASE_ID_RE, LEASE_KINDS, LEASE_TIME_MAX, SSH_KEY_FINGERPRINT_RE } from './lease-claims-check.js';
import { HostSchema } from './primitives.js';

export * from './lease-claims-check.js';

/**
 * The lease: the unit of authorization, carried as a compact JWS (EdDSA) inside the
 * `lease@tunnel` extension of an OpenSSH user certificate (DESIGN "Leases and certificates").
 * This file is the only definition of its claims (lease-claims-check.ts holds its names and
 * patterns, and the relay's plain check of the claims, tested against LeaseClaimsSchema).
 */

export const LeaseKindSchema = z.enum(LEASE_KINDS);
export type LeaseKind = z.infer<typeof LeaseKindSchema>;
export const EgressDriverSchema = z.enum(EGRESS_DRIVERS);
export const LeaseIdSchema = z.string().regex(LEASE_ID_RE, 'must be a lease id (lse_ and 32 hex digits)');
export const ExposureNameSchema = z.string().regex(EXPOSURE_NAME_RE, 'must match [a-z0-9-]{1,63}');
export const PortSchema = z.number().int().min(1).max(65535);
/** A lease time in unix seconds: 1970 to the end of 9999 (LEASE_TIME_MAX). */
export const LeaseTimeSchema = z.number().int().min(0).max(LEASE_TIME_MAX);

export const LeaseTargetSchema = z.strictObject({
  host: HostSchema,
  port: PortSchema,
});
export type LeaseTarget = z.infer<typeof LeaseTargetSchema>;

const base = {
  iss: z.string().min(1).max(LEASE_CLAIM_MAX.iss),
  sub: z.string().min(1).max(LEASE_CLAIM_MAX.sub),
  aud: z.string().min(1).max(LEASE_CLAIM_MAX.aud),
  jti: z.string().min(1).max(LEASE_CLAIM_MAX.jti),
  iat: LeaseTimeSchema,
  nbf: LeaseTimeSchema,
  exp: LeaseTimeSchema,
  /** SHA256 fingerprint (`SHA256:...`) of the one client public key this lease is bound to. */
  ssh_key: z.string().regex(SSH_KEY_FINGERPRINT_RE),
  /** The user name, which is also the certificate's only principal. */
  name: z.string().min(1).max(LEASE_CLAIM_MAX.name),
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
