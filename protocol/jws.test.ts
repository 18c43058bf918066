import assert from 'node:assert/strict';
import { sign as cryptoSign } from 'node:crypto';
import { ed25519Pair } from '../shared/testing/ed25519-pair.js';
import { describe, it } from 'node:test';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { checkTimeClaims, hasAudience, JwsError, signJws, verifyJws, type JwsFailure } from './jws.js';
import { rawPublicKey } from './ssh-key.js';

const { privateKey, publicKey } = ed25519Pair();
const other = ed25519Pair();
const KID = 'sig_test';
const TYP = 'tunnel-lease+jwt';
const jwks = createLocalJWKSet({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: rawPublicKey(publicKey).toString('base64url'), kid: KID, use: 'sig', alg: 'EdDSA' }] });
const now = Math.floor(Date.now() / 1000);
const claims = { iss: 'https://control.example', sub: 'usr_1', aud: 'nod_1', jti: 'lse_1', iat: now, nbf: now, exp: now + 600, name: 'bob', kind: 'open', exposure: 'svc' };
const keyFor = (kid: string) => (kid === KID ? publicKey : undefined);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

function refused(fn: () => unknown, reason: JwsFailure): void {
  assert.throws(fn, (err: unknown) => err instanceof JwsError && err.reason === reason);
}

describe('compact EdDSA JWS on node:crypto', () => {
  it('writes byte for byte what jose writes, and jose verifies it', async () => {
    const ours = signJws({ kid: KID, typ: TYP }, claims, privateKey);
    const theirs = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: KID, typ: TYP }).sign(privateKey);
    assert.equal(ours, theirs, 'Ed25519 is deterministic: same header and payload bytes, same token');
    const { payload, protectedHeader } = await jwtVerify(ours, jwks, { algorithms: ['EdDSA'], typ: TYP, issuer: claims.iss, audience: 'nod_1' });
    assert.deepEqual(payload, claims);
    assert.deepEqual(protectedHeader, { alg: 'EdDSA', kid: KID, typ: TYP });
  });

  it('writes each kid and typ its own header, as jose does, with the encoded headers kept between tokens', async () => {
    // Interleaved, then again after more kids than are kept (64): a kept header is only ever the
    // one of its own kid and typ, whatever kid or typ came before; a kid reused with another key
    // (a rotation) signs with that key.
    const rotated = ed25519Pair();
    const headers: [string, string][] = [
      [KID, TYP],
      [KID, 'at+jwt'],
      ['sig_other', TYP],
      ['a\nb', 'c'],
      ['a', 'b\nc'],
      ['"quoted"', 'x\u2028y'],
      ['k\u00e9y', 'caf\u00e9'],
      ['', ''],
    ];
    const many: [string, string][] = Array.from({ length: 70 }, (_, i) => [`sig_${i}`, TYP]);
    for (const [kid, typ] of [...headers, ...headers.toReversed(), ...many, ...headers]) {
      for (const key of [privateKey, rotated.privateKey]) {
        const ours = signJws({ kid, typ }, claims, key);
        const theirs = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid, typ }).sign(key);
        assert.equal(ours, theirs, JSON.stringify({ kid, typ }));
        const pub = key === privateKey ? publicKey : rotated.publicKey;
        assert.deepEqual(verifyJws(ours, typ, (k) => (k === kid ? pub : undefined)), claims);
      }
    }
  });

  it('verifies what jose signs', async () => {
    const token = await new SignJWT({ name: 'alice', role: 'admin' })
      .setProtectedHeader({ alg: 'EdDSA', kid: KID, typ: 'at+jwt' })
      .setIssuer('https://c')
      .setAudience(['https://c/v1', 'other'])
      .setSubject('usr_2')
      .setJti('at_1')
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(privateKey);
    const payload = verifyJws(token, 'at+jwt', keyFor);
    assert.equal(payload.sub, 'usr_2');
    assert.ok(hasAudience(payload, 'https://c/v1'));
    assert.ok(!hasAudience(payload, 'https://c'));
    assert.deepEqual(checkTimeClaims(payload, new Date()), { exp: now + 60 });
  });

  it('refuses tampering, other keys, other types and malformed tokens', () => {
    const token = signJws({ kid: KID, typ: TYP }, claims, privateKey);
    const [h, p, s] = token.split('.') as [string, string, string];
    refused(() => verifyJws(`${h}.${b64({ ...claims, exposure: 'other' })}.${s}`, TYP, keyFor), 'signature');
    const sig = Buffer.from(s, 'base64url');
    sig[0]! ^= 1;
    refused(() => verifyJws(`${h}.${p}.${sig.toString('base64url')}`, TYP, keyFor), 'signature');
    refused(() => verifyJws(`${h}.${p}.${s.slice(0, 40)}`, TYP, keyFor), 'signature');
    refused(() => verifyJws(signJws({ kid: KID, typ: TYP }, claims, other.privateKey), TYP, keyFor), 'signature');
    refused(() => verifyJws(signJws({ kid: 'sig_other', typ: TYP }, claims, privateKey), TYP, keyFor), 'unknown_key');
    refused(() => verifyJws(token, 'at+jwt', keyFor), 'header');
    for (const header of [
      { alg: 'none', kid: KID, typ: TYP },
      { alg: 'HS256', kid: KID, typ: TYP },
      { alg: 'EdDSA', typ: TYP },
      { alg: 'EdDSA', kid: KID, typ: TYP, crit: ['exp'] },
      { alg: 'EdDSA', kid: KID, typ: TYP, b64: false },
    ]) {
      refused(() => verifyJws(`${b64(header)}.${p}.${s}`, TYP, keyFor), 'header');
    }
    for (const bad of ['', 'a.b', `${h}.${p}.${s}.x`, `${h}.${p}`, `!!.${p}.${s}`, `${b64([1])}.${p}.${s}`, `${Buffer.from('{').toString('base64url')}.${p}.${s}`, 'x'.repeat(20_000)]) {
      refused(() => verifyJws(bad, TYP, keyFor), 'malformed');
    }
    // A correctly signed payload that is not a JSON object.
    const input = `${h}.${b64([claims])}`;
    refused(() => verifyJws(`${input}.${cryptoSign(null, Buffer.from(input), privateKey).toString('base64url')}`, TYP, keyFor), 'malformed');
  });

  it('time claims: agrees with jose at the boundaries', async () => {
    const at = (t: number) => new Date(t * 1000 + 500);
    const payload = { ...claims, nbf: now + 10, exp: now + 20 };
    const token = signJws({ kid: KID, typ: TYP }, payload, privateKey);
    for (const t of [now + 9, now + 10, now + 19, now + 20, now + 21]) {
      const ours = (() => {
        try {
          checkTimeClaims(payload, at(t));
          return 'ok';
        } catch (err) {
          return (err as JwsError).reason;
        }
      })();
      const theirs = await jwtVerify(token, jwks, { currentDate: at(t) }).then(
        () => 'ok',
        (err: unknown) => (err instanceof joseErrors.JWTExpired ? 'expired' : 'not_yet_valid'),
      );
      assert.equal(ours, theirs, `at ${t - now}`);
    }
    refused(() => checkTimeClaims({ ...claims, exp: undefined }, new Date()), 'claims');
    refused(() => checkTimeClaims({ ...claims, exp: '9999999999' }, new Date()), 'claims');
    refused(() => checkTimeClaims({ ...claims, nbf: 'soon' }, new Date()), 'claims');
  });
});
