import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SshKeyError,
  ed25519Seed,
  encodePublicKeyBlob,
  encodeSignatureBlob,
  fingerprintSha256,
  formatOpenSshPrivateKey,
  formatPublicKeyLine,
  isSmallOrderEd25519,
  parseOpenSshPrivateKey,
  parsePublicKeyBlob,
  parsePublicKeyLine,
  parseSignatureBlob,
  publicKeyBlob,
  publicKeyObject,
  rawPublicKey,
} from './ssh-key.js';
import { SshReader, SshWriter } from './ssh-wire.js';
import { expectedCert, readFixture } from './fixtures/fixtures.js';

function keyCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SshKeyError, `expected SshKeyError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

/** The checkint ssh-keygen chose, so that re-formatting can be compared byte for byte. */
function checkintOf(pem: string): number {
  const b64 = pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  const r = new SshReader(Buffer.from(b64, 'base64'));
  r.bytes(15);
  r.string();
  r.string();
  r.string();
  r.uint32();
  r.string();
  return new SshReader(r.string()).uint32();
}

const tmp = mkdtempSync(join(tmpdir(), 'ssh-key-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('public keys', () => {
  const expected = expectedCert('lease');

  it('parses the ssh-keygen public key line and fingerprints it as ssh-keygen -lf does', () => {
    const line = readFixture('user.pub').trim();
    const { publicKey, blob, comment } = parsePublicKeyLine(line);
    assert.equal(publicKey.toString('hex'), expected.publicKeyHex);
    assert.equal(comment, 'alice@laptop');
    assert.equal(fingerprintSha256(blob), expected.keyFingerprint);
    assert.equal(formatPublicKeyLine(publicKey, comment), line);
    assert.equal(fingerprintSha256(parsePublicKeyLine(readFixture('ca.pub')).blob), expected.caFingerprint);
  });

  it('converts between KeyObject, raw key and blob', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = rawPublicKey(publicKey);
    assert.equal(raw.length, 32);
    assert.deepEqual(rawPublicKey(privateKey), raw);
    assert.deepEqual(parsePublicKeyBlob(publicKeyBlob(privateKey)), raw);
    const again = publicKeyObject(raw);
    const sig = sign(null, Buffer.from('m'), privateKey);
    assert.ok(verify(null, Buffer.from('m'), again, sig));
  });

  it('refuses the 14 encodings of the small-order points (libsodium ge25519_has_small_order), and only them', () => {
    // The 8 points of order 1, 2, 4 and 8 in canonical form, then the non-canonical ones
    // (x = 0 with the sign bit set; y = p and p + 1), each checked to be small order by
    // multiplying it out when this list was written.
    const small = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0000000000000000000000000000000000000000000000000000000000000080',
      '0100000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000080',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
      'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    ];
    for (const h of small) {
      const pk = Buffer.from(h, 'hex');
      assert.ok(isSmallOrderEd25519(pk), h);
      const line = formatPublicKeyLine(pk, 'weak');
      assert.equal(keyCode(() => parsePublicKeyLine(line)), 'KEY_SMALL_ORDER', h);
      assert.equal(keyCode(() => parsePublicKeyBlob(encodePublicKeyBlob(pk))), 'KEY_SMALL_ORDER', h);
    }
    // Near misses and real keys pass.
    for (const h of small) {
      const pk = Buffer.from(h, 'hex');
      pk[7] = pk[7]! ^ 0x10;
      assert.ok(!isSmallOrderEd25519(pk), `${h} with one bit flipped`);
    }
    const raw = rawPublicKey(generateKeyPairSync('ed25519').publicKey);
    assert.deepEqual(parsePublicKeyLine(formatPublicKeyLine(raw)).publicKey, raw);
  });

  it('rejects other key types, wrong lengths and trailing bytes', () => {
    const pk = Buffer.alloc(32, 1);
    assert.equal(keyCode(() => parsePublicKeyBlob(new SshWriter().string('ssh-rsa').string(pk).toBuffer())), 'KEY_BAD_TYPE');
    assert.equal(keyCode(() => parsePublicKeyBlob(new SshWriter().string('ssh-ed25519').string(Buffer.alloc(31)).toBuffer())), 'KEY_LENGTH');
    assert.equal(keyCode(() => parsePublicKeyBlob(Buffer.concat([encodePublicKeyBlob(pk), Buffer.of(0)]))), 'KEY_MALFORMED');
    assert.equal(keyCode(() => parsePublicKeyBlob(encodePublicKeyBlob(pk).subarray(0, 40))), 'KEY_MALFORMED');
    assert.equal(keyCode(() => encodePublicKeyBlob(Buffer.alloc(33))), 'KEY_LENGTH');
    assert.equal(keyCode(() => parsePublicKeyLine('ssh-ed25519')), 'KEY_BAD_LINE');
    assert.equal(keyCode(() => parsePublicKeyLine('ssh-ed25519 AAAA*')), 'KEY_BAD_LINE');
    const blob64 = encodePublicKeyBlob(pk).toString('base64');
    assert.equal(keyCode(() => parsePublicKeyLine(`ssh-rsa ${blob64}`)), 'KEY_BAD_TYPE');
    const { publicKey: rsa } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.equal(keyCode(() => rawPublicKey(rsa)), 'KEY_BAD_TYPE');
  });
});

describe('signature blobs', () => {
  it('wraps and unwraps a 64-byte ed25519 signature', () => {
    const sig = Buffer.alloc(64, 7);
    const blob = encodeSignatureBlob(sig);
    assert.equal(blob.toString('hex').slice(0, 38), '0000000b7373682d65643235353139' + '00000040');
    assert.deepEqual(parseSignatureBlob(blob), sig);
    assert.equal(keyCode(() => parseSignatureBlob(new SshWriter().string('rsa-sha2-256').string(sig).toBuffer())), 'KEY_BAD_TYPE');
    assert.equal(keyCode(() => parseSignatureBlob(new SshWriter().string('ssh-ed25519').string(Buffer.alloc(63)).toBuffer())), 'KEY_LENGTH');
    assert.equal(keyCode(() => parseSignatureBlob(Buffer.concat([blob, Buffer.of(1)]))), 'KEY_MALFORMED');
  });
});

describe('OpenSSH private key files', () => {
  it('reads ssh-keygen private keys and re-formats them byte for byte', () => {
    for (const [file, comment] of [['ca', 'tunnel-test-ca'], ['user', 'alice@laptop']] as const) {
      const pem = readFixture(file);
      const parsed = parseOpenSshPrivateKey(pem);
      assert.equal(parsed.comment, comment);
      assert.deepEqual(parsed.publicKey, parsePublicKeyLine(readFixture(`${file}.pub`)).publicKey);
      assert.equal(formatOpenSshPrivateKey(parsed.privateKey, comment, checkintOf(pem)), pem);
    }
  });

  it('writes keys that ssh-keygen accepts (ssh-keygen -y derives the same public key)', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const path = join(tmp, 'id_ed25519');
    writeFileSync(path, formatOpenSshPrivateKey(privateKey, 'lease-key'), { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', path], { encoding: 'utf8' }).trim();
    assert.equal(derived, formatPublicKeyLine(rawPublicKey(privateKey), 'lease-key'));
    const reparsed = parseOpenSshPrivateKey(formatOpenSshPrivateKey(privateKey));
    assert.deepEqual(reparsed.publicKey, rawPublicKey(privateKey));
  });

  it('fingerprints match ssh-keygen -lf for freshly generated keys', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const path = join(tmp, 'fp.pub');
    writeFileSync(path, `${formatPublicKeyLine(rawPublicKey(privateKey))}\n`);
    const out = execFileSync('ssh-keygen', ['-lf', path], { encoding: 'utf8' }).split(' ')[1];
    assert.equal(fingerprintSha256(publicKeyBlob(privateKey)), out);
  });

  it("takes a private key's seed from its PKCS#8 DER (RFC 8032's first test key), and refuses other keys", () => {
    const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    const pk = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
    const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: pk.toString('base64url') }, format: 'jwk' });
    assert.deepEqual(ed25519Seed(key), seed);
    assert.deepEqual(rawPublicKey(key), pk);
    const pair = generateKeyPairSync('ed25519');
    assert.equal(keyCode(() => ed25519Seed(pair.publicKey)), 'KEY_BAD_TYPE');
    assert.equal(keyCode(() => ed25519Seed(generateKeyPairSync('x25519').privateKey)), 'KEY_BAD_TYPE');
  });

  it('formats a fresh key without exporting it as a JWK: under Node 20 that export could deadlock in a GC (node/channel-memory.test hung so)', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const formats: unknown[] = [];
    const exportKey = privateKey.export.bind(privateKey) as (o?: object) => unknown;
    (privateKey as unknown as { export: (o?: { format?: string }) => unknown }).export = (o) => {
      formats.push(o?.format);
      return exportKey(o);
    };
    const pem = formatOpenSshPrivateKey(privateKey, 'host');
    assert.ok(!formats.includes('jwk'), `exported as ${formats.join(', ')}`);
    const parsed = parseOpenSshPrivateKey(pem);
    assert.deepEqual(ed25519Seed(parsed.privateKey), ed25519Seed(privateKey));
    assert.deepEqual(parsed.publicKey, rawPublicKey(privateKey));
  });

  it('refuses encrypted and malformed files', () => {
    const pem = readFixture('user');
    assert.equal(keyCode(() => parseOpenSshPrivateKey('nonsense')), 'KEY_BAD_LINE');
    const enc = join(tmp, 'enc');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-pass', '-f', enc]);
    assert.equal(keyCode(() => parseOpenSshPrivateKey(readFileSync(enc, 'utf8'))), 'KEY_ENCRYPTED');
    const cut = pem.replace(/\n[A-Za-z0-9+/=]+\n-----END/, '\n-----END');
    assert.throws(() => parseOpenSshPrivateKey(cut), SshKeyError);
  });
});
