import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { checkTimeClaims, hasAudience, JwsError, verifyJws } from '../../protocol/jws.js';
import {
  CERT_BACKDATE_SECONDS,
  LEASE_CERT_EXTENSION,
  LEASE_TOKEN_TYP,
  checkLeaseClaims,
  PERMIT_PORT_FORWARDING,
} from '../../protocol/lease-claims-check.js';
import type { LeaseClaims } from '../../protocol/lease-claims.js';
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

/**
 * A certificate and lease that passed every check (except the session signature, checked
 * separately). Held for the connection's life, so it keeps what the relay uses and not the
 * parsed certificate: its fields are slices of small pooled Buffers, and each one kept an 8 KiB
 * pool slab alive per connection (issue 11, a heap snapshot of N against 2N idle exposures).
 */
export interface VerifiedLease {
  claims: LeaseClaims;
  leaseId: string;
  serial: string;
  /** Fingerprint of the certified key (`SHA256:...`). */
  fingerprint: string;
  certifiedKey: KeyObject;
  /** When the connection must close: the earlier of the certificate's and the lease's end. */
  deadline: Date;
  /**
   * The keys that vouched for it (objects of the trust snapshot it was checked with): the lease
   * key and the CA key. A connection whose keys leave the trust document is closed (stillTrusted).
   */
  leaseKid: string;
  leaseKey: KeyObject;
  caBlob: Buffer;
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

  let caBlob: Buffer;
  try {
    caBlob = verifyCertificateSignature(cert, ctx.trust.caBlobs);
  } catch (err) {
    // The key id and serial of a certificate no trusted CA signed are the sender's words (any
    // 1 KB of text, another member's lease id): they go nowhere, only the key's fingerprint.
    if (err instanceof CertificateError && err.code === 'CERT_UNTRUSTED_CA') return refuse('ca_untrusted', { fingerprint, unknownKey: true });
    if (err instanceof CertificateError) return refuse('ca_signature_invalid', { fingerprint });
    throw err;
  }
  const ids = { leaseId: cert.keyId, serial: cert.serial.toString(), fingerprint };
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

  let payload: Record<string, unknown>;
  let leaseKey: KeyObject;
  let leaseKid: string;
  try {
    ({ payload, key: leaseKey, kid: leaseKid } = verifyLeaseToken(token, ctx));
  } catch (err) {
    if (!(err instanceof LeaseTokenRefused)) throw err;
    return refuse(err.reason, { ...ids, unknownKey: err.reason === 'lease_unknown_key' });
  }
  const claims = checkLeaseClaims(payload);
  if (claims === undefined) return refuse('lease_claims_invalid', ids);
  if (claims.exp <= secs(ctx.now)) return refuse('lease_expired', ids);
  if (claims.jti !== cert.keyId) return refuse('lease_key_id_mismatch', ids);
  if (claims.ssh_key !== fingerprint) return refuse('lease_key_mismatch', ids);
  if (claims.name !== key.username) return refuse('lease_name_mismatch', ids);
  if (ctx.isRevoked(claims.jti)) return refuse('lease_revoked', ids);

  const deadlineSecs = Math.min(Number(cert.validBefore), claims.exp);
  return {
    ok: true,
    lease: {
      claims,
      leaseId: claims.jti,
      serial: ids.serial,
      fingerprint,
      certifiedKey: publicKeyObject(cert.publicKey),
      deadline: new Date(deadlineSecs * 1000),
      leaseKid,
      leaseKey,
      caBlob,
    },
  };
}

/**
 * True while `trust` still holds the lease key and the CA key that vouched for `lease`. A key
 * the control plane withdrew (a compromised key taken out of the JWKS) must not keep the
 * connections it let in: a lease signed with a stolen key is unknown to the revocation feed.
 */
export function stillTrusted(lease: Pick<VerifiedLease, 'leaseKid' | 'leaseKey' | 'caBlob'>, trust: TrustSnapshot | undefined): boolean {
  if (!trust || trust.leaseKeys.get(lease.leaseKid)?.equals(lease.leaseKey) !== true) return false;
  return trust.caBlobs.some((b) => b.equals(lease.caBlob));
}

class LeaseTokenRefused extends Error {
  constructor(readonly reason: AuthRefusal) {
    super(reason);
  }
}

const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'jti', 'iat', 'nbf', 'exp'] as const;

/**
 * The lease token: an EdDSA compact JWS signed by a lease key of the trust document, verified
 * with node:crypto (protocol/jws.ts; jose's WebCrypto path cost about 2 ms of the relay's
 * CPU per connection setup, issue 11). The checks are jose's `jwtVerify` with the options the
 * relay used: typ, issuer, audience (this node), every claim in REQUIRED_CLAIMS present, `nbf`
 * with CERT_BACKDATE_SECONDS of tolerance, `exp` exact (the caller's deadline check).
 */
function verifyLeaseToken(token: string, ctx: VerifyContext): { payload: Record<string, unknown>; key: KeyObject; kid: string } {
  const keys = ctx.trust!.leaseKeys;
  let payload: Record<string, unknown>;
  let key: KeyObject | undefined;
  let kid = '';
  try {
    payload = verifyJws(token, LEASE_TOKEN_TYP, (k) => {
      kid = k;
      return (key = keys.get(k));
    });
  } catch (err) {
    if (err instanceof JwsError) throw new LeaseTokenRefused(err.reason === 'unknown_key' ? 'lease_unknown_key' : 'lease_invalid');
    throw err;
  }
  if (payload.iss !== ctx.issuer) throw new LeaseTokenRefused('lease_wrong_issuer');
  if (!hasAudience(payload, ctx.nodeId)) throw new LeaseTokenRefused('lease_wrong_node');
  if (REQUIRED_CLAIMS.some((c) => payload[c] === undefined)) throw new LeaseTokenRefused('lease_claims_invalid');
  // nbf with the certificate's backdating as tolerance (clock skew); exp exactly.
  const skewed = new Date(ctx.now.getTime() + CERT_BACKDATE_SECONDS * 1000);
  try {
    checkTimeClaims({ ...payload, exp: Number.MAX_SAFE_INTEGER }, skewed);
    checkTimeClaims({ ...payload, nbf: undefined }, ctx.now);
  } catch (err) {
    if (!(err instanceof JwsError)) throw err;
    throw new LeaseTokenRefused(err.reason === 'expired' ? 'lease_expired' : err.reason === 'not_yet_valid' ? 'lease_not_yet_valid' : 'lease_claims_invalid');
  }
  if (!key) throw new LeaseTokenRefused('lease_unknown_key'); // verifyJws returned without asking for a key: cannot happen
  return { payload, key, kid };
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
