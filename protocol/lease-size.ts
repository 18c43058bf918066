import { JWK_KID_MAX } from './jwks-check.js';
import { LEASE_CLAIM_MAX, LEASE_TIME_MAX, LEASE_TOKEN_TYP } from './lease-claims-check.js';
import type { LeaseTarget } from './lease-claims.js';
import { CERT_LIMITS } from './ssh-cert.js';

/**
 * How much of a lease its certificate can carry. The lease token is the data of the certificate's
 * `lease@tunnel` extension, an SSH string of at most CERT_LIMITS.optionData bytes (8 KiB: what
 * parseCertificate, and so every relay, accepts). Every claim but an egress lease's targets has a
 * bounded length; the targets (up to 32 hosts of up to 253 characters) do not fit together, so
 * their room is bounded here, derived from that limit: an egress lease whose targets take at most
 * EGRESS_TARGETS_MAX_BYTES fits with every other claim (and the token's header) at its longest.
 *
 * The longest claims are counted as text that JSON writes as is (one byte a character, nothing
 * escaped), which the control plane's are: ids and key ids are a prefix and hex digits, user
 * names [a-z][a-z0-9._-]*, and the issuer is --public-url, which control/config.ts refuses unless
 * it is printable ASCII without `"` or `\` and at most LEASE_CLAIM_MAX.iss characters.
 */

/** Characters of base64url without padding for `bytes` bytes. */
const base64urlLength = (bytes: number) => Math.ceil((bytes * 4) / 3);

/** The longest lease token header: `{"alg":"EdDSA","kid":...,"typ":"tunnel-lease+jwt"}` with the longest key id a JWKS may name. */
const LONGEST_HEADER = JSON.stringify({ alg: 'EdDSA', kid: 'k'.repeat(JWK_KID_MAX), typ: LEASE_TOKEN_TYP });

/** The longest egress claims without targets (`"targets":[]`), every other claim at its longest. */
const LONGEST_EGRESS_CLAIMS = JSON.stringify({
  iss: 'i'.repeat(LEASE_CLAIM_MAX.iss),
  sub: 's'.repeat(LEASE_CLAIM_MAX.sub),
  aud: 'a'.repeat(LEASE_CLAIM_MAX.aud),
  jti: 'j'.repeat(LEASE_CLAIM_MAX.jti),
  iat: LEASE_TIME_MAX,
  nbf: LEASE_TIME_MAX,
  exp: LEASE_TIME_MAX,
  ssh_key: `SHA256:${'A'.repeat(43)}`,
  name: 'n'.repeat(LEASE_CLAIM_MAX.name),
  kind: 'egress',
  targets: [],
});

/** The longest lease token a certificate extension holds: its data is `string token` (a 4-byte length, then the token). */
export const LEASE_TOKEN_MAX = CERT_LIMITS.optionData - 4;

/** The longest payload (JSON bytes) of a token with the longest header: header `.` payload `.` signature (64 bytes), base64url. */
const LONGEST_PAYLOAD = Math.floor(((LEASE_TOKEN_MAX - base64urlLength(Buffer.byteLength(LONGEST_HEADER)) - 1 - 1 - base64urlLength(64)) * 3) / 4);

/**
 * The most room an egress lease's targets may take: egressTargetsBytes(targets) at most this many
 * bytes. 3,208 (with LEASE_CLAIM_MAX and 8 KiB): 32 targets with hosts of up to 75 characters, or
 * 11 with hosts of 253.
 */
export const EGRESS_TARGETS_MAX_BYTES = LONGEST_PAYLOAD - (Buffer.byteLength(LONGEST_EGRESS_CLAIMS) - '[]'.length);

/** The bytes `targets` take in a lease token's claims: their JSON, `[{"host":...,"port":...},...]`. */
export function egressTargetsBytes(targets: readonly LeaseTarget[]): number {
  return Buffer.byteLength(JSON.stringify(targets.map((t) => ({ host: t.host, port: t.port }))));
}
