import { signJws } from '../../protocol/jws.js';
import { encodeCertificate, flagOption, stringOption } from '../../protocol/ssh-cert.js';
import { LEASE_TOKEN_MAX } from '../../protocol/lease-size.js';
import { encodePublicKeyBlob, fingerprintSha256, rawPublicKey } from '../../protocol/ssh-key.js';
import {
  CERT_BACKDATE_SECONDS,
  LEASE_CERT_EXTENSION,
  LEASE_TOKEN_TYP,
  PERMIT_PORT_FORWARDING,
  type LeaseClaims,
  type LeaseTarget,
} from '../../protocol/lease-claims.js';
import { checkLeaseClaims } from '../../protocol/lease-claims-check.js';
import { JWK_USE_LEASE, JWK_USE_SSH_CA, type Jwks } from '../../protocol/jwks.js';
import type { KeyObject } from 'node:crypto';
import type { SigningKey } from '../keys/key-store.js';
import { pooledRandomBytes } from '../lib/ids.js';

export type LeaseGrant =
  | { kind: 'expose'; exposure: string; port: number }
  | { kind: 'open'; exposure: string }
  | { kind: 'egress'; targets: LeaseTarget[] };

export interface IssueLeaseInput {
  issuer: string;
  leaseId: string;
  serial: bigint;
  userId: string;
  userName: string;
  nodeId: string;
  grant: LeaseGrant;
  /** 32 raw bytes of the client's Ed25519 public key. */
  clientPublicKey: Buffer;
  notBefore: Date;
  expiresAt: Date;
}

export interface IssuedLease {
  token: string;
  /** Certificate blob (wire form). */
  certificate: Buffer;
  claims: LeaseClaims;
}

const secs = (d: Date) => Math.floor(d.getTime() / 1000);

/**
 * The lease does not fit in a certificate: its token is longer than a certificate extension holds
 * (LEASE_TOKEN_MAX; with it, the whole certificate stays far below CERT_LIMITS.blob, every other
 * field being bounded). The inputs are the issue, not a bug: callers answer it as a refused
 * request (services/leases.ts: LEASE_TOO_LARGE).
 */
export class LeaseTooLargeError extends Error {
  override readonly name = 'LeaseTooLargeError';
}

/**
 * Signs a lease token and the OpenSSH user certificate that carries it (DESIGN "Leases and
 * certificates"): key id = lease id, principals = [user name], validity = nbf..exp backdated
 * by at most 60 s, extensions `lease@tunnel` (the token) and `permit-port-forwarding`.
 */
export async function issueLease(keys: { lease: SigningKey; ca: SigningKey }, input: IssueLeaseInput): Promise<IssuedLease> {
  const nbf = secs(input.notBefore);
  const exp = secs(input.expiresAt);
  if (exp <= nbf) throw new RangeError('lease must expire after it starts');
  // Nothing is signed that a relay would refuse: the claims as a relay reads them, with
  // checkLeaseClaims (LeaseClaimsSchema's rules without zod; protocol/relay-checks.test holds
  // the two equal), which costs about half of zod's parse per lease (issue 11).
  const claims = checkLeaseClaims({
    iss: input.issuer,
    sub: input.userId,
    aud: input.nodeId,
    jti: input.leaseId,
    iat: nbf,
    nbf,
    exp,
    ssh_key: fingerprintSha256(encodePublicKeyBlob(input.clientPublicKey)),
    name: input.userName,
    ...input.grant,
  });
  if (!claims) throw new RangeError('the lease claims do not satisfy LeaseClaimsSchema');
  const token = signJws({ kid: keys.lease.kid, typ: LEASE_TOKEN_TYP }, claims, keys.lease.privateKey);
  // protocol/lease-size.ts bounds what can make it longer (egress targets); this is the backstop.
  if (token.length > LEASE_TOKEN_MAX) throw new LeaseTooLargeError(`the lease token of ${token.length} bytes is longer than a certificate carries (${LEASE_TOKEN_MAX})`);

  // Extensions must be in lexical order (PROTOCOL.certkeys); "lease@tunnel" < "permit-port-forwarding".
  const extensions = [stringOption(LEASE_CERT_EXTENSION, token), flagOption(PERMIT_PORT_FORWARDING)].sort((a, b) =>
    a.name < b.name ? -1 : 1,
  );
  const certificate = encodeCertificate(
    {
      publicKey: input.clientPublicKey,
      serial: input.serial,
      type: 'user',
      keyId: input.leaseId,
      principals: [input.userName],
      validAfter: BigInt(nbf - CERT_BACKDATE_SECONDS),
      validBefore: BigInt(exp),
      // From the pool of random bytes (one getrandom per 4 KiB, not per lease).
      nonce: pooledRandomBytes(32),
      criticalOptions: [],
      extensions,
    },
    keys.ca.privateKey,
  );
  return { token, certificate, claims };
}

/** The JWKS document for a set of published keys. */
export function buildJwks(keys: { kid: string; publicKey: KeyObject; use: 'sig' | 'ssh-ca' }[]): Jwks {
  return {
    keys: keys.map((k) => ({
      kty: 'OKP' as const,
      crv: 'Ed25519' as const,
      x: rawPublicKey(k.publicKey).toString('base64url'),
      kid: k.kid,
      use: k.use === 'sig' ? JWK_USE_LEASE : JWK_USE_SSH_CA,
      alg: 'EdDSA' as const,
    })),
  };
}
