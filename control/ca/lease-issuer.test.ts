/**
 * issueLease checks the claims it signs with checkLeaseClaims, not LeaseClaimsSchema's parse
 * (issue 11): the token must be byte for byte what the schema's parse gave (the payload in the
 * same key order, the header as jose writes it), and nothing the schema refuses may be signed,
 * at and past every bound the issuer's inputs can reach.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { ed25519Pair } from '../../shared/testing/ed25519-pair.js';
import { JWK_KID_MAX } from '../../protocol/jwks.js';
import { LEASE_CERT_EXTENSION, LEASE_CLAIM_MAX, LEASE_TIME_MAX, LEASE_TOKEN_TYP, LeaseClaimsSchema, checkLeaseClaims } from '../../protocol/lease-claims.js';
import { EGRESS_TARGETS_MAX_BYTES, LEASE_TOKEN_MAX } from '../../protocol/lease-size.js';
import { verifyJws } from '../../protocol/jws.js';
import { parseCertificate, stringOptionValue, verifyCertificateSignature } from '../../protocol/ssh-cert.js';
import { encodePublicKeyBlob, fingerprintSha256, publicKeyBlob, rawPublicKey } from '../../protocol/ssh-key.js';
import { hostOf, targetsOfBytes } from '../testing/egress-targets.js';
import { issueLease, LeaseTooLargeError, type IssueLeaseInput } from './lease-issuer.js';

const keys = { lease: { kid: 'sig_issuer_test', ...ed25519Pair() }, ca: { kid: 'ca_issuer_test', ...ed25519Pair() } };
const clientPublicKey = rawPublicKey(generateKeyPairSync('ed25519').publicKey);
const NOW = new Date('2030-06-01T12:00:00.250Z');

const input = (over: Partial<IssueLeaseInput> = {}): IssueLeaseInput => ({
  issuer: 'https://control.test',
  leaseId: `lse_${'0123456789abcdef'.repeat(2)}`,
  serial: 7n,
  userId: 'usr_1',
  userName: 'alice',
  nodeId: 'nod_1',
  grant: { kind: 'open', exposure: 'web' },
  clientPublicKey,
  notBefore: NOW,
  expiresAt: new Date(NOW.getTime() + 600_000),
  ...over,
});

/** The claims object issueLease builds from `i`, before any check (as lease-issuer.ts writes it). */
function rawClaims(i: IssueLeaseInput): Record<string, unknown> {
  const nbf = Math.floor(i.notBefore.getTime() / 1000);
  return {
    iss: i.issuer,
    sub: i.userId,
    aud: i.nodeId,
    jti: i.leaseId,
    iat: nbf,
    nbf,
    exp: Math.floor(i.expiresAt.getTime() / 1000),
    ssh_key: fingerprintSha256(encodePublicKeyBlob(i.clientPublicKey)),
    name: i.userName,
    ...i.grant,
  };
}

const targets = (n: number, host = 'db.internal', port = 5432) => Array.from({ length: n }, () => ({ host, port }));

const ACCEPTED: [string, Partial<IssueLeaseInput>][] = [
  ['an open lease', {}],
  ['an expose lease on port 1', { grant: { kind: 'expose', exposure: 'web', port: 1 } }],
  ['an expose lease on port 65535', { grant: { kind: 'expose', exposure: 'a'.repeat(63), port: 65535 } }],
  ['an egress lease with one target', { grant: { kind: 'egress', targets: targets(1) } }],
  // Not 32 of 253 characters: the token would pass the 8 KiB of a certificate extension (ssh-cert.ts CERT_LIMITS).
  ['an egress lease with 32 targets', { grant: { kind: 'egress', targets: targets(32, 'db.internal', 65535) } }],
  ['an egress lease to a host of 253 characters', { grant: { kind: 'egress', targets: targets(1, hostOf(253)) } }],
  ['an egress lease to an IPv6 literal', { grant: { kind: 'egress', targets: [{ host: '::1', port: 22 }, { host: '10.0.0.1', port: 1 }] } }],
  ['the longest names', { issuer: 'i'.repeat(2048), userId: 'u'.repeat(128), nodeId: 'n'.repeat(128), leaseId: 'l'.repeat(128), userName: 'a'.repeat(64) }],
  ['the last second of 9999', { notBefore: new Date((LEASE_TIME_MAX - 1) * 1000), expiresAt: new Date(LEASE_TIME_MAX * 1000 + 999) }],
];

const REFUSED: [string, Partial<IssueLeaseInput>][] = [
  ['an empty issuer', { issuer: '' }],
  ['an issuer over 2048 characters', { issuer: 'i'.repeat(2049) }],
  ['an empty user id', { userId: '' }],
  ['a user id over 128 characters', { userId: 'u'.repeat(129) }],
  ['an empty node id', { nodeId: '' }],
  ['a node id over 128 characters', { nodeId: 'n'.repeat(129) }],
  ['an empty lease id', { leaseId: '' }],
  ['a lease id over 128 characters', { leaseId: 'l'.repeat(129) }],
  ['an empty user name', { userName: '' }],
  ['a user name over 64 characters', { userName: 'a'.repeat(65) }],
  ['a start before 1970', { notBefore: new Date(-1000), expiresAt: new Date(1000) }],
  ['an end after 9999', { expiresAt: new Date((LEASE_TIME_MAX + 1) * 1000) }],
  ['port 0', { grant: { kind: 'expose', exposure: 'web', port: 0 } }],
  ['port 65536', { grant: { kind: 'expose', exposure: 'web', port: 65536 } }],
  ['a port that is not an integer', { grant: { kind: 'expose', exposure: 'web', port: 22.5 } }],
  ['a port that is not a number', { grant: { kind: 'expose', exposure: 'web', port: '22' as unknown as number } }],
  ['an exposure name with capitals', { grant: { kind: 'open', exposure: 'Web' } }],
  ['an exposure name of 64 characters', { grant: { kind: 'open', exposure: 'a'.repeat(64) } }],
  ['an empty exposure name', { grant: { kind: 'open', exposure: '' } }],
  ['an exposure name with NUL', { grant: { kind: 'open', exposure: 'web\u0000' } }],
  ['an open lease with a port', { grant: { kind: 'open', exposure: 'web', port: 22 } as IssueLeaseInput['grant'] }],
  ['an open lease with an own __proto__ key', { grant: JSON.parse('{"kind":"open","exposure":"web","__proto__":{"x":1}}') as IssueLeaseInput['grant'] }],
  ['an unknown kind', { grant: { kind: 'forward', exposure: 'web' } as unknown as IssueLeaseInput['grant'] }],
  ['no targets', { grant: { kind: 'egress', targets: [] } }],
  ['33 targets', { grant: { kind: 'egress', targets: targets(33) } }],
  ['a target host of 254 characters', { grant: { kind: 'egress', targets: targets(1, hostOf(254)) } }],
  ['an empty target host', { grant: { kind: 'egress', targets: targets(1, '') } }],
  ['a target host with a space', { grant: { kind: 'egress', targets: targets(1, 'db internal') } }],
  ['a target host with NUL', { grant: { kind: 'egress', targets: targets(1, 'db\u0000') } }],
  ['a target on port 0', { grant: { kind: 'egress', targets: targets(1, 'db', 0) } }],
  ['a target with another key', { grant: { kind: 'egress', targets: [{ host: 'db', port: 1, node: 'x' } as { host: string; port: number }] } }],
  ['targets as an object', { grant: { kind: 'egress', targets: { 0: { host: 'db', port: 1 }, length: 1 } as unknown as [] } }],
];

describe('issueLease: the claims it signs', () => {
  for (const [what, over] of ACCEPTED) {
    it(`signs ${what} byte for byte as LeaseClaimsSchema's parse gave it, as jose writes it`, async () => {
      const i = input(over);
      const schema = LeaseClaimsSchema.parse(rawClaims(i));
      const { token, claims } = await issueLease(keys, i);
      const [header, payload] = token.split('.');
      assert.equal(Buffer.from(payload!, 'base64url').toString(), JSON.stringify(schema), 'the same payload text, in the same key order');
      assert.deepEqual(claims, schema);
      const jose = await new SignJWT(schema).setProtectedHeader({ alg: 'EdDSA', kid: keys.lease.kid, typ: LEASE_TOKEN_TYP }).sign(keys.lease.privateKey);
      assert.equal(token, jose, 'Ed25519 is deterministic: the same token as jose signs');
      assert.deepEqual(JSON.parse(Buffer.from(header!, 'base64url').toString()), { alg: 'EdDSA', kid: keys.lease.kid, typ: LEASE_TOKEN_TYP });
    });
  }

  for (const [what, over] of REFUSED) {
    it(`refuses ${what}, as LeaseClaimsSchema does`, async () => {
      const i = input(over);
      assert.equal(LeaseClaimsSchema.safeParse(rawClaims(i)).success, false, 'the schema refuses it');
      await assert.rejects(issueLease(keys, i), RangeError);
    });
  }

  it('refuses a lease that does not end after it starts', async () => {
    await assert.rejects(issueLease(keys, input({ expiresAt: NOW })), /expire after it starts/);
    await assert.rejects(issueLease(keys, input({ expiresAt: new Date(NOW.getTime() + 500) })), /expire after it starts/, 'the same second');
  });
});

/**
 * What a certificate carries (protocol/lease-size.ts): its `lease@tunnel` extension holds at most
 * 8 KiB, so an egress lease's targets may take EGRESS_TARGETS_MAX_BYTES together. At that bound
 * the lease fits with every other claim and the token's key id at their longest; one byte more
 * does not (the bound is exact), and issueLease refuses it as LeaseTooLargeError.
 */
describe('issueLease: the most a certificate carries', () => {
  const longestKeys = { lease: { ...keys.lease, kid: 'k'.repeat(JWK_KID_MAX) }, ca: keys.ca };
  const longest = (targets: IssueLeaseInput['grant'] & { kind: 'egress' }): IssueLeaseInput =>
    input({
      issuer: 'i'.repeat(LEASE_CLAIM_MAX.iss),
      userId: 's'.repeat(LEASE_CLAIM_MAX.sub),
      nodeId: 'a'.repeat(LEASE_CLAIM_MAX.aud),
      leaseId: 'j'.repeat(LEASE_CLAIM_MAX.jti),
      userName: 'n'.repeat(LEASE_CLAIM_MAX.name),
      notBefore: new Date((LEASE_TIME_MAX - 1) * 1000),
      expiresAt: new Date(LEASE_TIME_MAX * 1000),
      grant: targets,
    });

  for (const count of [12, 32]) {
    it(`${count} targets of ${EGRESS_TARGETS_MAX_BYTES} bytes (the most allowed), every other claim at its longest: issued, and read back as a relay reads it`, async () => {
      const targets = targetsOfBytes(count, EGRESS_TARGETS_MAX_BYTES);
      const { token, certificate, claims } = await issueLease(longestKeys, longest({ kind: 'egress', targets }));
      assert.ok(token.length <= LEASE_TOKEN_MAX);
      assert.ok(token.length >= LEASE_TOKEN_MAX - 2, `the bound leaves no room unused: ${token.length} of ${LEASE_TOKEN_MAX}`);
      // The relay's steps (node/auth/verify-client-cert.ts): parse, CA signature, extension, token signature, claims.
      const cert = parseCertificate(certificate);
      verifyCertificateSignature(cert, [publicKeyBlob(keys.ca.privateKey)]);
      const ext = cert.extensions.find((e) => e.name === LEASE_CERT_EXTENSION);
      assert.equal(stringOptionValue(ext!), token);
      const payload = verifyJws(token, LEASE_TOKEN_TYP, (kid) => (kid === longestKeys.lease.kid ? keys.lease.publicKey : undefined));
      assert.deepEqual(checkLeaseClaims(payload), claims);
      assert.deepEqual(claims.kind === 'egress' && claims.targets, targets);
    });
  }

  it('one byte more: refused as LeaseTooLargeError (not a CertificateError), before a certificate is made', async () => {
    const targets = targetsOfBytes(32, EGRESS_TARGETS_MAX_BYTES + 1);
    await assert.rejects(issueLease(longestKeys, longest({ kind: 'egress', targets })), (err: unknown) => err instanceof LeaseTooLargeError && /longer than a certificate carries/.test(err.message));
  });

  it('32 targets of 253 characters with ordinary claims: refused as LeaseTooLargeError', async () => {
    const targets = Array.from({ length: 32 }, (_, i) => ({ host: hostOf(253, 'abcdefghijklmnopqrstuvwxyz0123456789'[i]), port: 5432 }));
    await assert.rejects(issueLease(keys, input({ grant: { kind: 'egress', targets } })), LeaseTooLargeError);
  });
});

