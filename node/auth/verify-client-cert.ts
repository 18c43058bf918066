import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify } from 'jose';
import {
  CERT_BACKDATE_SECONDS,
  LEASE_CERT_EXTENSION,
  LEASE_TOKEN_TYP,
  LeaseClaimsSchema,
  PERMIT_PORT_FORWARDING,
  type LeaseClaims,
} from '../../protocol/lease-claims.js';
import {
  CERT_KEY_TYPE,
  CertificateError,
  parseCertificate,
  stringOptionValue,
  verifyCertificateSignature,
  type SshCertificate,
} from '../../protocol/ssh-cert.js';
import { encodePublicKeyBlob, fingerprintSha256, parseSignatureBlob, publicKeyObject } from '../../protocol/ssh-key.js';
import type { TrustSnapshot } from '../trust/jwks-cache.js';

/**
 * Every reason a client certificate is refused (DESIGN "Leases and certificates"). These are
 * logged and used as metric labels; they never contain the token or the certificate.
 */
export const AUTH_REFUSALS = [
  'no_trust',
  'not_certificate',
  'cert_malformed',
  'ca_untrusted',
  'ca_signature_invalid',
  'not_user_certificate',
  'cert_not_yet_valid',
  'cert_expired',
  'principal_mismatch',
  'critical_option',
  'forwarding_not_permitted',
  'lease_missing',
  'lease_unknown_key',
  'lease_invalid',
  'lease_wrong_issuer',
  'lease_wrong_node',
  'lease_not_yet_valid',
  'lease_expired',
  'lease_claims_invalid',
  'lease_key_id_mismatch',
  'lease_key_mismatch',
  'lease_name_mismatch',
  'lease_revoked',
  'signature_invalid',
] as const;
export type AuthRefusal = (typeof AUTH_REFUSALS)[number];

/** A certificate and lease that passed every check (except the session signature, checked separately). */
export interface VerifiedLease {
  cert: SshCertificate;
  claims: LeaseClaims;
  leaseId: string;
  serial: string;
  /** Fingerprint of the certified key (`SHA256:...`). */
  fingerprint: string;
  certifiedKey: KeyObject;
  /** When the connection must close: the earlier of the certificate's and the lease's end. */
  deadline: Date;
}

export type VerifyResult =
  | { ok: true; lease: VerifiedLease }
  | {
      ok: false;
      reason: AuthRefusal;
      /** True when fresher trust material (an unknown CA or lease key) might change the answer. */
      unknownKey: boolean;
      leaseId?: string;
      serial?: string;
      fingerprint?: string;
    };

export interface VerifyContext {
  now: Date;
  trust: TrustSnapshot | undefined;
  /** The control plane's issuer, learned at enrollment. */
  issuer: string;
  /** This relay's node id: the lease audience. */
  nodeId: string;
  isRevoked(leaseId: string): boolean;
}

export interface ClientKey {
  /** Public key algorithm the client named. */
  algo: string;
  /** The key (here: certificate) blob the client sent. */
  blob: Buffer;
  username: string;
}

const secs = (d: Date) => Math.floor(d.getTime() / 1000);

/**
 * Checks a client's certificate and its embedded lease, in the order DESIGN lists them.
 * Pure apart from the clock value and trust snapshot it is handed.
 */
export async function verifyClientCertificate(key: ClientKey, ctx: VerifyContext): Promise<VerifyResult> {
  const refuse = (reason: AuthRefusal, extra: Partial<Extract<VerifyResult, { ok: false }>> = {}): VerifyResult => ({
    ok: false,
    reason,
    unknownKey: false,
    ...extra,
  });
  if (key.algo !== CERT_KEY_TYPE) return refuse('not_certificate');
  if (!ctx.trust) return refuse('no_trust');

  let cert: SshCertificate;
  try {
    cert = parseCertificate(key.blob);
  } catch (err) {
    if (err instanceof CertificateError) return refuse('cert_malformed');
    throw err;
  }
  const fingerprint = fingerprintSha256(encodePublicKeyBlob(cert.publicKey));
  const ids = { leaseId: cert.keyId, serial: cert.serial.toString(), fingerprint };

  try {
    verifyCertificateSignature(cert, ctx.trust.caBlobs);
  } catch (err) {
    if (err instanceof CertificateError && err.code === 'CERT_UNTRUSTED_CA') return refuse('ca_untrusted', { ...ids, unknownKey: true });
    if (err instanceof CertificateError) return refuse('ca_signature_invalid', ids);
    throw err;
  }
  if (cert.type !== 'user') return refuse('not_user_certificate', ids);
  const now = BigInt(secs(ctx.now));
  if (now < cert.validAfter) return refuse('cert_not_yet_valid', ids);
  if (now >= cert.validBefore) return refuse('cert_expired', ids);
  if (!cert.principals.includes(key.username)) return refuse('principal_mismatch', ids);
  // sshd refuses certificates with critical options it does not understand; we understand none.
  if (cert.criticalOptions.length > 0) return refuse('critical_option', ids);
  if (!cert.extensions.some((e) => e.name === PERMIT_PORT_FORWARDING)) return refuse('forwarding_not_permitted', ids);

  const ext = cert.extensions.find((e) => e.name === LEASE_CERT_EXTENSION);
  if (!ext) return refuse('lease_missing', ids);
  let token: string;
  try {
    token = stringOptionValue(ext);
  } catch {
    return refuse('lease_missing', ids);
  }

  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, ctx.trust.leaseKeys, {
      algorithms: ['EdDSA'],
      issuer: ctx.issuer,
      audience: ctx.nodeId,
      typ: LEASE_TOKEN_TYP,
      currentDate: ctx.now,
      // Tolerates skew on nbf like the certificate's backdating; exp is checked exactly below.
      clockTolerance: CERT_BACKDATE_SECONDS,
      requiredClaims: ['iss', 'sub', 'aud', 'jti', 'iat', 'nbf', 'exp'],
    }));
  } catch (err) {
    return refuse(joseRefusal(err), { ...ids, unknownKey: err instanceof joseErrors.JWKSNoMatchingKey });
  }
  const parsed = LeaseClaimsSchema.safeParse(payload);
  if (!parsed.success) return refuse('lease_claims_invalid', ids);
  const claims = parsed.data;
  if (claims.exp <= secs(ctx.now)) return refuse('lease_expired', ids);
  if (claims.jti !== cert.keyId) return refuse('lease_key_id_mismatch', ids);
  if (claims.ssh_key !== fingerprint) return refuse('lease_key_mismatch', ids);
  if (claims.name !== key.username) return refuse('lease_name_mismatch', ids);
  if (ctx.isRevoked(claims.jti)) return refuse('lease_revoked', ids);

  const deadlineSecs = Math.min(Number(cert.validBefore), claims.exp);
  return {
    ok: true,
    lease: {
      cert,
      claims,
      leaseId: claims.jti,
      serial: ids.serial,
      fingerprint,
      certifiedKey: publicKeyObject(cert.publicKey),
      deadline: new Date(deadlineSecs * 1000),
    },
  };
}

function joseRefusal(err: unknown): AuthRefusal {
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'lease_unknown_key';
  if (err instanceof joseErrors.JWTExpired) return 'lease_expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return 'lease_wrong_issuer';
    if (err.claim === 'aud') return 'lease_wrong_node';
    if (err.claim === 'nbf') return 'lease_not_yet_valid';
    return 'lease_claims_invalid';
  }
  return 'lease_invalid';
}

/**
 * The client's proof of possession: `signature` is the whole SSH signature blob
 * (`string "ssh-ed25519", string sig64`), `signedData` the exact bytes ssh2 hands us as
 * `ctx.blob` (DESIGN "Facts about ssh2 1.17").
 */
export function verifySessionSignature(lease: Pick<VerifiedLease, 'certifiedKey'>, signedData: Buffer, signature: Buffer): boolean {
  let sig64: Buffer;
  try {
    sig64 = parseSignatureBlob(signature);
  } catch {
    return false;
  }
  return cryptoVerify(null, signedData, lease.certifiedKey, sig64);
}
