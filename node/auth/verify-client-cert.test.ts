import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildJwks, issueLease } from '../../control/ca/lease-issuer.js';
import { JWK_KID_MAX } from '../../protocol/jwks.js';
import { LEASE_CERT_EXTENSION, LEASE_CLAIM_MAX, LEASE_TIME_MAX, LEASE_TOKEN_TYP, PERMIT_PORT_FORWARDING } from '../../protocol/lease-claims.js';
import { EGRESS_TARGETS_MAX_BYTES } from '../../protocol/lease-size.js';
import { targetsOfBytes } from '../../control/testing/egress-targets.js';
import { CERT_KEY_TYPE, encodeCertificate, flagOption, parseCertificate, stringOption } from '../../protocol/ssh-cert.js';
import { encodeSignatureBlob, rawPublicKey } from '../../protocol/ssh-key.js';
import { JwksCache } from '../trust/jwks-cache.js';
import { noopLogger } from '../../shared/logger.js';
import { tempDirRemovedAtExit } from '../../shared/testing/temp-dir.js';
import { verifyClientCertificate, verifySessionSignature, type VerifyContext } from './verify-client-cert.js';

const key = (kid: string) => ({ kid, ...generateKeyPairSync('ed25519') });
const keys = { lease: key('l1'), ca: key('c1') };
const NOW = new Date('2030-06-01T12:00:00Z');
const client = generateKeyPairSync('ed25519');
const jwksFile = join(tempDirRemovedAtExit('tunnel-jwks-unit-'), 'jwks.json');

async function trust(lease: { kid: string; publicKey: KeyObject } = keys.lease) {
  const jwks = buildJwks([
    { kid: lease.kid, publicKey: lease.publicKey, use: 'sig' },
    { kid: 'c1', publicKey: keys.ca.publicKey, use: 'ssh-ca' },
  ]);
  const cache = new JwksCache({ client: { fetchJwks: async () => jwks }, file: jwksFile, clock: { now: () => NOW }, logger: noopLogger, refreshMs: 1e9, minRefreshMs: 0 });
  await cache.init();
  return cache.snapshot;
}

async function issue(over: Partial<Parameters<typeof issueLease>[1]> = {}, k = keys) {
  return issueLease(k, {
    issuer: 'https://control',
    leaseId: 'lease_1',
    serial: 7n,
    userId: 'usr_1',
    userName: 'alice',
    nodeId: 'node_1',
    grant: { kind: 'open', exposure: 'svc' },
    clientPublicKey: rawPublicKey(client.publicKey),
    notBefore: new Date(NOW.getTime() - 60_000),
    expiresAt: new Date(NOW.getTime() + 600_000),
    ...over,
  });
}

async function check(blob: Buffer, opts: { user?: string; algo?: string; ctx?: Partial<VerifyContext> } = {}) {
  const ctx: VerifyContext = { now: NOW, trust: await trust(), issuer: 'https://control', nodeId: 'node_1', isRevoked: () => false, ...opts.ctx };
  return verifyClientCertificate({ algo: opts.algo ?? CERT_KEY_TYPE, blob, username: opts.user ?? 'alice' }, ctx);
}

function reencode(blob: Buffer, change: (c: ReturnType<typeof parseCertificate>) => Partial<ReturnType<typeof parseCertificate>>) {
  const c = parseCertificate(blob);
  return encodeCertificate({ ...c, ...change(c) }, keys.ca.privateKey);
}

describe('verifyClientCertificate', () => {
  it('accepts a valid certificate and lease, with the lease deadline', async () => {
    const { certificate, claims } = await issue();
    const r = await check(certificate);
    assert.ok(r.ok);
    assert.equal(r.lease.leaseId, 'lease_1');
    assert.equal(r.lease.deadline.getTime(), claims.exp * 1000);
  });

  it('accepts the largest lease a certificate carries: egress targets at their bound, every other claim at its longest', async () => {
    const longest = { ...keys.lease, kid: 'k'.repeat(JWK_KID_MAX) };
    const [issuer, nodeId, user] = ['i'.repeat(LEASE_CLAIM_MAX.iss), 'a'.repeat(LEASE_CLAIM_MAX.aud), 'n'.repeat(LEASE_CLAIM_MAX.name)];
    const targets = targetsOfBytes(32, EGRESS_TARGETS_MAX_BYTES);
    const now = new Date((LEASE_TIME_MAX - 1) * 1000);
    const { certificate } = await issue(
      {
        issuer,
        nodeId,
        userName: user,
        userId: 's'.repeat(LEASE_CLAIM_MAX.sub),
        leaseId: 'j'.repeat(LEASE_CLAIM_MAX.jti),
        notBefore: now,
        expiresAt: new Date(LEASE_TIME_MAX * 1000),
        grant: { kind: 'egress', targets },
      },
      { lease: longest, ca: keys.ca },
    );
    const r = await check(certificate, { user, ctx: { now, issuer, nodeId, trust: await trust(longest) } });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.lease.claims.kind === 'egress' && r.lease.claims.targets, targets);
  });

  const cases: [string, () => Promise<{ blob: Buffer; user?: string; algo?: string; ctx?: Partial<VerifyContext> }>][] = [
    ['no_trust', async () => ({ blob: (await issue()).certificate, ctx: { trust: undefined } })],
    ['not_certificate', async () => ({ blob: (await issue()).certificate, algo: 'ssh-ed25519' })],
    ['cert_malformed', async () => ({ blob: Buffer.concat([(await issue()).certificate, Buffer.of(0)]) })],
    ['ca_untrusted', async () => ({ blob: (await issue({}, { lease: keys.lease, ca: key('rogue') })).certificate })],
    ['ca_signature_invalid', async () => {
      const b = Buffer.from((await issue()).certificate);
      b[b.length - 1] = (b[b.length - 1] as number) ^ 1;
      return { blob: b };
    }],
    ['not_user_certificate', async () => ({ blob: reencode((await issue()).certificate, () => ({ type: 'host' })) })],
    ['cert_not_yet_valid', async () => ({ blob: (await issue({ notBefore: new Date(NOW.getTime() + 3600_000), expiresAt: new Date(NOW.getTime() + 7200_000) })).certificate })],
    ['cert_expired', async () => ({ blob: (await issue({ notBefore: new Date(NOW.getTime() - 7200_000), expiresAt: new Date(NOW.getTime() - 3600_000) })).certificate })],
    ['principal_mismatch', async () => ({ blob: (await issue()).certificate, user: 'mallory' })],
    ['critical_option', async () => ({ blob: reencode((await issue()).certificate, () => ({ criticalOptions: [stringOption('force-command', '/bin/true')] })) })],
    ['forwarding_not_permitted', async () => ({ blob: reencode((await issue()).certificate, (c) => ({ extensions: c.extensions.filter((e) => e.name !== PERMIT_PORT_FORWARDING) })) })],
    ['lease_missing', async () => ({ blob: reencode((await issue()).certificate, () => ({ extensions: [flagOption(PERMIT_PORT_FORWARDING)] })) })],
    ['lease_invalid', async () => ({ blob: reencode((await issue()).certificate, (c) => ({ extensions: c.extensions.map((e) => (e.name === LEASE_CERT_EXTENSION ? stringOption(e.name, 'a.b.c') : e)) })) })],
    ['lease_unknown_key', async () => ({ blob: (await issue({}, { lease: key('l-unknown'), ca: keys.ca })).certificate })],
    ['lease_wrong_issuer', async () => ({ blob: (await issue({ issuer: 'https://evil' })).certificate })],
    ['lease_wrong_node', async () => ({ blob: (await issue({ nodeId: 'node_2' })).certificate })],
    ['lease_key_id_mismatch', async () => ({ blob: reencode((await issue()).certificate, () => ({ keyId: 'lease_other' })) })],
    ['lease_key_mismatch', async () => ({ blob: reencode((await issue()).certificate, () => ({ publicKey: rawPublicKey(generateKeyPairSync('ed25519').publicKey) })) })],
    ['lease_revoked', async () => ({ blob: (await issue()).certificate, ctx: { isRevoked: (id) => id === 'lease_1' } })],
    ['lease_not_yet_valid', async () => {
      // The lease starts in an hour (beyond the 60 s skew tolerance); a certificate re-signed to be valid now.
      const { certificate } = await issue({ notBefore: new Date(NOW.getTime() + 3600_000), expiresAt: new Date(NOW.getTime() + 7200_000) });
      return { blob: reencode(certificate, () => ({ validAfter: 0n })) };
    }],
    ['lease_expired', async () => {
      // Certificate still valid, lease over: only a cert re-signed by the CA can disagree like this.
      const { certificate } = await issue({ expiresAt: new Date(NOW.getTime() + 1000) });
      return { blob: reencode(certificate, (c) => ({ validBefore: c.validBefore + 3600n })), ctx: { now: new Date(NOW.getTime() + 2000) } };
    }],
  ];
  for (const [reason, make] of cases) {
    it(`refuses: ${reason}`, async () => {
      const c = await make();
      const r = await check(c.blob, c);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, reason);
    });
  }

  it("names no lease or serial of a certificate no trusted CA signed (the sender's words), only its key", async () => {
    const rogue = await issue({}, { lease: keys.lease, ca: key('rogue') });
    const forged = Buffer.from((await issue()).certificate);
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
    for (const blob of [rogue.certificate, forged]) {
      const r = await check(blob);
      assert.ok(!r.ok);
      assert.equal(r.leaseId, undefined);
      assert.equal(r.serial, undefined);
      assert.match(String(r.fingerprint), /^SHA256:/);
    }
  });

  describe('lease tokens of a shape no issuer writes, in a certificate the CA signed', () => {
    const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url');
    /** A compact JWS from raw header and payload JSON text (so 1e309 or a duplicate stays as written). */
    const rawJws = (header: string, payload: string, signer: (input: Buffer) => Buffer) => {
      const input = `${b64u(header)}.${b64u(payload)}`;
      return `${input}.${b64u(signer(Buffer.from(input)))}`;
    };
    const ed = (k: KeyObject) => (input: Buffer) => sign(null, input, k);
    const header = (o: Record<string, unknown> = {}) => JSON.stringify({ alg: 'EdDSA', kid: 'l1', typ: LEASE_TOKEN_TYP, ...o });
    /** The issued claims as JSON text, with `edit` applied to the text. */
    async function claimsText(edit: (json: string) => string = (j) => j) {
      const { claims } = await issue();
      return edit(JSON.stringify(claims));
    }
    async function withToken(token: string) {
      return reencode((await issue()).certificate, (c) => ({ extensions: c.extensions.map((e) => (e.name === LEASE_CERT_EXTENSION ? stringOption(e.name, token) : e)) }));
    }
    const cases: [string, string, () => Promise<string>][] = [
      ['alg none, no signature', 'lease_invalid', async () => `${b64u(header({ alg: 'none' }))}.${b64u(await claimsText())}.`],
      ['HS256 keyed with the lease public key', 'lease_invalid', async () =>
        rawJws(header({ alg: 'HS256' }), await claimsText(), (i) => createHmac('sha256', keys.lease.publicKey.export({ format: 'der', type: 'spki' })).update(i).digest())],
      ['kid of the CA key, signed by the CA', 'lease_unknown_key', async () => rawJws(header({ kid: 'c1' }), await claimsText(), ed(keys.ca.privateKey))],
      ['a crit header', 'lease_invalid', async () => rawJws(header({ crit: ['exp'], exp: 1 }), await claimsText(), ed(keys.lease.privateKey))],
      ['another typ (an access token)', 'lease_invalid', async () => rawJws(header({ typ: 'at+jwt' }), await claimsText(), ed(keys.lease.privateKey))],
      ['exp 1e309 (Infinity)', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"exp":\d+/, '"exp":1e309')), ed(keys.lease.privateKey))],
      ['exp as a string', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"exp":(\d+)/, '"exp":"$1"')), ed(keys.lease.privateKey))],
      // A safe integer, past the last JavaScript Date (8.64e12 s): the relay's deadline would be an Invalid Date.
      ['exp 1e13, beyond any Date', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"exp":\d+/, '"exp":10000000000000')), ed(keys.lease.privateKey))],
      ['exp after 9999', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"exp":\d+/, `"exp":${LEASE_TIME_MAX + 1}`)), ed(keys.lease.privateKey))],
      ['iat before 1970', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"iat":\d+/, '"iat":-1')), ed(keys.lease.privateKey))],
      ['exp with a fraction', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace(/"exp":(\d+)/, '"exp":$1.5')), ed(keys.lease.privateKey))],
      ['a NUL in the name', 'lease_name_mismatch', async () => rawJws(header(), await claimsText((j) => j.replace('"name":"alice"', '"name":"alice\\u0000"')), ed(keys.lease.privateKey))],
      ['an audience list', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace('"aud":"node_1"', '"aud":["node_1"]')), ed(keys.lease.privateKey))],
      ['an extra claim', 'lease_claims_invalid', async () => rawJws(header(), await claimsText((j) => j.replace('{', '{"admin":true,')), ed(keys.lease.privateKey))],
      ['a payload that is an array', 'lease_invalid', async () => rawJws(header(), '[1]', ed(keys.lease.privateKey))],
    ];
    for (const [what, reason, token] of cases) {
      it(`refuses ${what}: ${reason}`, async () => {
        const r = await check(await withToken(await token()));
        assert.equal(r.ok, false);
        assert.equal(!r.ok && r.reason, reason);
      });
    }
  });

  it('verifies the session signature with the certified key only', async () => {
    const r = await check((await issue()).certificate);
    assert.ok(r.ok);
    const data = Buffer.from('session data');
    assert.equal(verifySessionSignature(r.lease, data, encodeSignatureBlob(sign(null, data, client.privateKey))), true);
    const other = generateKeyPairSync('ed25519').privateKey;
    assert.equal(verifySessionSignature(r.lease, data, encodeSignatureBlob(sign(null, data, other))), false);
    assert.equal(verifySessionSignature(r.lease, data, Buffer.from('garbage')), false);
  });
});
