import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  CERT_KEY_TYPE,
  CertificateError,
  certificateValidAt,
  encodeCertificate,
  flagOption,
  formatCertificateLine,
  parseCertificate,
  parseCertificateLine,
  stringOption,
  stringOptionValue,
  verifyCertificateSignature,
  type CertificateTemplate,
  type CertOption,
  type SshCertificate,
} from './ssh-cert.js';
import { encodePublicKeyBlob, encodeSignatureBlob, fingerprintSha256, parseOpenSshPrivateKey, parsePublicKeyLine, publicKeyBlob, rawPublicKey } from './ssh-key.js';
import { SshWriter } from './ssh-wire.js';
import { CERT_FIXTURES, expectedCert, readFixture } from './fixtures/fixtures.js';

const ca = parseOpenSshPrivateKey(readFixture('ca'));
const caBlob = parsePublicKeyLine(readFixture('ca.pub')).blob;
const leaseBlob = parseCertificateLine(readFixture('lease-cert.pub'));
const tmp = mkdtempSync(join(tmpdir(), 'ssh-cert-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function certCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CertificateError, `expected CertificateError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

function templateOf(c: SshCertificate): CertificateTemplate {
  const { publicKey, serial, type, keyId, principals, validAfter, validBefore, criticalOptions, extensions, nonce } = c;
  return { publicKey, serial, type, keyId, principals, validAfter, validBefore, criticalOptions, extensions, nonce };
}

/** Every field of a certificate blob, unvalidated, so tests can build what encodeCertificate refuses. */
interface RawFields {
  keyType: string;
  nonce: Buffer;
  publicKey: Buffer;
  serial: bigint;
  typeCode: number;
  keyId: string;
  principals: Buffer;
  validAfter: bigint;
  validBefore: bigint;
  critical: Buffer;
  extensions: Buffer;
  reserved: Buffer;
  signatureKey: Buffer;
  sigAlgo: string;
  sigLength: number;
}

function options(list: [string, Buffer][]): Buffer {
  const w = new SshWriter();
  for (const [n, d] of list) w.string(n).string(d);
  return w.toBuffer();
}

function strings(list: string[]): Buffer {
  const w = new SshWriter();
  for (const s of list) w.string(s);
  return w.toBuffer();
}

function rawCert(over: Partial<RawFields> = {}, signer: KeyObject = ca.privateKey): Buffer {
  const f: RawFields = {
    keyType: CERT_KEY_TYPE,
    nonce: Buffer.alloc(32, 1),
    publicKey: Buffer.alloc(32, 2),
    serial: 1n,
    typeCode: 1,
    keyId: 'id',
    principals: strings(['alice']),
    validAfter: 0n,
    validBefore: 10n,
    critical: Buffer.alloc(0),
    extensions: Buffer.alloc(0),
    reserved: Buffer.alloc(0),
    signatureKey: caBlob,
    sigAlgo: 'ssh-ed25519',
    sigLength: 64,
    ...over,
  };
  const w = new SshWriter()
    .string(f.keyType)
    .string(f.nonce)
    .string(f.publicKey)
    .uint64(f.serial)
    .uint32(f.typeCode)
    .string(f.keyId)
    .string(f.principals)
    .uint64(f.validAfter)
    .uint64(f.validBefore)
    .string(f.critical)
    .string(f.extensions)
    .string(f.reserved)
    .string(f.signatureKey);
  const sig = sign(null, w.toBuffer(), signer);
  const sigField = Buffer.alloc(f.sigLength);
  sig.copy(sigField);
  return w.string(new SshWriter().string(f.sigAlgo).string(sigField).toBuffer()).toBuffer();
}

describe('golden certificates made by ssh-keygen', () => {
  for (const name of CERT_FIXTURES) {
    const expected = expectedCert(name);
    const blob = parseCertificateLine(readFixture(`${name}-cert.pub`));

    it(`${name}: parses into the expected fields`, () => {
      const c = parseCertificate(blob);
      assert.equal(c.type, expected.type);
      assert.equal(c.keyId, expected.keyId);
      assert.equal(c.serial, BigInt(expected.serial));
      assert.deepEqual(c.principals, expected.principals);
      assert.equal(c.validAfter, BigInt(expected.validAfter));
      assert.equal(c.validBefore, BigInt(expected.validBefore));
      assert.equal(c.nonce.toString('hex'), expected.nonceHex);
      assert.equal(c.publicKey.toString('hex'), expected.publicKeyHex);
      assert.equal(c.signatureKey.toString('base64'), expected.signatureKey);
      assert.equal(c.reserved.length, 0);
      for (const [got, want] of [
        [c.criticalOptions, expected.criticalOptions],
        [c.extensions, expected.extensions],
      ] as const) {
        assert.deepEqual(
          got.map((o) => ({ name: o.name, dataHex: o.data.toString('hex') })),
          want.map((o) => ({ name: o.name, dataHex: o.dataHex })),
        );
        for (const w of want) {
          if (w.value !== undefined) assert.equal(stringOptionValue(got.find((o) => o.name === w.name) as CertOption), w.value);
        }
      }
      assert.deepEqual(Buffer.concat([c.signedData, new SshWriter().string(c.signature).toBuffer()]), blob);
      assert.deepEqual(c.raw, blob);
    });

    it(`${name}: fingerprints equal ssh-keygen -lf`, () => {
      const c = parseCertificate(blob);
      assert.equal(fingerprintSha256(encodePublicKeyBlob(c.publicKey)), expected.keyFingerprint);
      assert.equal(fingerprintSha256(encodePublicKeyBlob(c.publicKey)), expected.certFingerprint);
      assert.equal(fingerprintSha256(c.signatureKey), expected.caFingerprint);
    });

    it(`${name}: verifies against the fixture CA and not against another`, () => {
      const c = parseCertificate(blob);
      const other = publicKeyBlob(generateKeyPairSync('ed25519').publicKey);
      assert.deepEqual(verifyCertificateSignature(c, [other, caBlob]), caBlob);
      assert.equal(certCode(() => verifyCertificateSignature(c, [other])), 'CERT_UNTRUSTED_CA');
      assert.equal(certCode(() => verifyCertificateSignature(c, [])), 'CERT_UNTRUSTED_CA');
    });

    it(`${name}: re-encoding with the fixture CA reproduces the bytes exactly`, () => {
      const c = parseCertificate(blob);
      assert.deepEqual(encodeCertificate(templateOf(c), ca.privateKey), blob);
      assert.equal(formatCertificateLine(blob, 'x'), `${CERT_KEY_TYPE} ${blob.toString('base64')} x`);
    });
  }
});

describe('encodeCertificate', () => {
  const user = generateKeyPairSync('ed25519');
  const lease = 'eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJsLTEifQ.sig';
  const template: CertificateTemplate = {
    publicKey: rawPublicKey(user.publicKey),
    serial: 0xfedcba9876543210n,
    type: 'user',
    keyId: 'l-1',
    principals: ['alice', 'bob'],
    validAfter: 1_700_000_000n,
    validBefore: 1_700_000_600n,
    extensions: [flagOption('permit-port-forwarding'), stringOption('lease@tunnel', lease)],
  };

  it('writes certificates that ssh-keygen -L reads and shows', () => {
    const blob = encodeCertificate(template, ca.privateKey);
    const path = join(tmp, 'enc-cert.pub');
    writeFileSync(path, `${formatCertificateLine(blob)}\n`);
    const out = execFileSync('ssh-keygen', ['-L', '-f', path], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    assert.match(out, /Type: ssh-ed25519-cert-v01@openssh\.com user certificate/);
    assert.match(out, /Key ID: "l-1"/);
    assert.match(out, /Serial: 18364758544493064720\n/);
    assert.match(out, /Valid: from 2023-11-14T22:13:20 to 2023-11-14T22:23:20/);
    assert.match(out, /Principals: \n\s+alice\n\s+bob\n/);
    assert.match(out, /Critical Options: \(none\)/);
    const leaseHex = new SshWriter().string(lease).toBuffer().toString('hex');
    assert.match(out, new RegExp(`Extensions: \\n\\s+lease@tunnel UNKNOWN OPTION: ${leaseHex} \\(len ${lease.length + 4}\\)\\n\\s+permit-port-forwarding\\n`));
    assert.match(out, new RegExp(`Signing CA: ED25519 ${fingerprintSha256(caBlob).replace(/[+/]/g, '\\$&')} `));
  });

  it('sorts options, draws a fresh 32-byte nonce and round-trips through parse', () => {
    const a = parseCertificate(encodeCertificate(template, ca.privateKey));
    const b = parseCertificate(encodeCertificate(template, ca.privateKey));
    assert.equal(a.nonce.length, 32);
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.deepEqual(a.extensions.map((o) => o.name), ['lease@tunnel', 'permit-port-forwarding']);
    assert.equal(stringOptionValue(a.extensions[0] as CertOption), lease);
    assert.deepEqual(templateOf(a), { ...template, nonce: a.nonce, criticalOptions: [], extensions: a.extensions });
  });

  it('refuses what the parser would refuse or what OpenSSH would read as a wildcard', () => {
    const k = ca.privateKey;
    assert.equal(certCode(() => encodeCertificate({ ...template, principals: [] }, k)), 'CERT_NO_PRINCIPALS');
    assert.equal(certCode(() => encodeCertificate({ ...template, principals: Array(257).fill('a') }, k)), 'CERT_TOO_MANY_PRINCIPALS');
    assert.equal(certCode(() => encodeCertificate({ ...template, publicKey: Buffer.alloc(31) }, k)), 'CERT_LENGTH');
    assert.equal(certCode(() => encodeCertificate({ ...template, publicKey: Buffer.alloc(32) }, k)), 'CERT_WEAK_KEY');
    assert.equal(certCode(() => encodeCertificate({ ...template, nonce: Buffer.alloc(8) }, k)), 'CERT_BAD_NONCE');
    assert.equal(certCode(() => encodeCertificate({ ...template, serial: -1n }, k)), 'CERT_LENGTH');
    assert.equal(certCode(() => encodeCertificate({ ...template, validAfter: 2n, validBefore: 1n }, k)), 'CERT_BAD_VALIDITY');
    const dup = [flagOption('x'), flagOption('x')];
    assert.equal(certCode(() => encodeCertificate({ ...template, extensions: dup }, k)), 'CERT_OPTIONS_ORDER');
    const big = stringOption('lease@tunnel', 'x'.repeat(8150));
    const many = { ...template, extensions: [big], criticalOptions: [{ ...big, name: 'a' }] };
    assert.equal(certCode(() => encodeCertificate(many, k)), 'CERT_TOO_LARGE');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    assert.equal(certCode(() => encodeCertificate(template, rsa)), 'CERT_BAD_KEY_TYPE');
  });

  it('validity follows OpenSSH: validAfter <= now < validBefore', () => {
    const c = { validAfter: 100n, validBefore: 200n };
    assert.equal(certificateValidAt(c, new Date(99_999)), false);
    assert.equal(certificateValidAt(c, new Date(100_000)), true);
    assert.equal(certificateValidAt(c, new Date(199_999)), true);
    assert.equal(certificateValidAt(c, new Date(200_000)), false);
  });
});

describe('parseCertificate strictness', () => {
  it('accepts the baseline used by the negative cases', () => {
    const c = parseCertificate(rawCert());
    verifyCertificateSignature(c, [caBlob]);
  });

  const cases: [string, Partial<RawFields>, string][] = [
    ['another key type', { keyType: 'ssh-rsa-cert-v01@openssh.com' }, 'CERT_BAD_KEY_TYPE'],
    ['a plain key type', { keyType: 'ssh-ed25519' }, 'CERT_BAD_KEY_TYPE'],
    ['a 31-byte key', { publicKey: Buffer.alloc(31) }, 'CERT_LENGTH'],
    ['a 33-byte key', { publicKey: Buffer.alloc(33) }, 'CERT_LENGTH'],
    ['an all-zero key (small order)', { publicKey: Buffer.alloc(32) }, 'CERT_WEAK_KEY'],
    ['the identity point as key (small order, sign bit set)', { publicKey: Buffer.from('01' + '00'.repeat(30) + '80', 'hex') }, 'CERT_WEAK_KEY'],
    ['a short nonce', { nonce: Buffer.alloc(15) }, 'CERT_BAD_NONCE'],
    ['a huge nonce', { nonce: Buffer.alloc(65) }, 'CERT_LENGTH'],
    ['type 0', { typeCode: 0 }, 'CERT_BAD_TYPE'],
    ['type 3', { typeCode: 3 }, 'CERT_BAD_TYPE'],
    ['257 principals', { principals: strings(Array(257).fill('a')) }, 'CERT_TOO_MANY_PRINCIPALS'],
    ['a truncated principal list', { principals: Buffer.from('0000000561', 'hex') }, 'CERT_TRUNCATED'],
    ['a non-UTF-8 principal', { principals: Buffer.from('00000001ff', 'hex') }, 'CERT_BAD_UTF8'],
    ['a too long key id', { keyId: 'k'.repeat(1025) }, 'CERT_LENGTH'],
    ['unsorted extensions', { extensions: options([['permit-pty', Buffer.alloc(0)], ['lease@tunnel', Buffer.alloc(0)]]) }, 'CERT_OPTIONS_ORDER'],
    ['duplicate extensions', { extensions: options([['a', Buffer.alloc(0)], ['a', Buffer.alloc(0)]]) }, 'CERT_OPTIONS_ORDER'],
    ['unsorted critical options', { critical: options([['source-address', Buffer.alloc(0)], ['force-command', Buffer.alloc(0)]]) }, 'CERT_OPTIONS_ORDER'],
    ['an empty option name', { extensions: options([['', Buffer.alloc(0)]]) }, 'CERT_BAD_OPTION'],
    ['an option without data', { extensions: new SshWriter().string('permit-pty').toBuffer() }, 'CERT_TRUNCATED'],
    ['an RSA CA key', { signatureKey: new SshWriter().string('ssh-rsa').string(Buffer.alloc(32)).toBuffer() }, 'CERT_BAD_KEY_TYPE'],
    ['a CA key with trailing bytes', { signatureKey: Buffer.concat([caBlob, Buffer.of(0)]) }, 'CERT_TRAILING_BYTES'],
    ['a 33-byte CA key', { signatureKey: new SshWriter().string('ssh-ed25519').string(Buffer.alloc(33)).toBuffer() }, 'CERT_LENGTH'],
    ['an rsa-sha2-512 signature', { sigAlgo: 'rsa-sha2-512' }, 'CERT_BAD_SIGNATURE_ALGORITHM'],
    ['a 65-byte signature', { sigLength: 65 }, 'CERT_LENGTH'],
    ['an oversized reserved field', { reserved: Buffer.alloc(257) }, 'CERT_LENGTH'],
  ];
  for (const [what, over, code] of cases) {
    it(`refuses ${what} with ${code}`, () => assert.equal(certCode(() => parseCertificate(rawCert(over))), code));
  }

  it('refuses trailing bytes, truncation and oversized blobs', () => {
    const blob = rawCert();
    assert.equal(certCode(() => parseCertificate(Buffer.concat([blob, Buffer.of(0)]))), 'CERT_TRAILING_BYTES');
    assert.equal(certCode(() => parseCertificate(Buffer.alloc(0))), 'CERT_TRUNCATED');
    for (let n = 0; n < blob.length; n++) assert.ok(certCode(() => parseCertificate(blob.subarray(0, n))));
    assert.equal(certCode(() => parseCertificate(Buffer.alloc(16 * 1024 + 1))), 'CERT_TOO_LARGE');
  });

  it('detects a changed lease extension and a foreign CA at verification', () => {
    const c = parseCertificate(leaseBlob);
    const i = leaseBlob.indexOf('eyJ');
    const tampered = Buffer.from(leaseBlob);
    tampered[i + 10] = (tampered[i + 10] as number) ^ 1;
    assert.equal(certCode(() => verifyCertificateSignature(parseCertificate(tampered), [caBlob])), 'CERT_BAD_SIGNATURE');
    const otherCa = generateKeyPairSync('ed25519').privateKey;
    const forged = rawCert({ signatureKey: caBlob }, otherCa);
    assert.equal(certCode(() => verifyCertificateSignature(parseCertificate(forged), [caBlob])), 'CERT_BAD_SIGNATURE');
    assert.equal(certCode(() => verifyCertificateSignature({ ...c, signature: encodeSignatureBlob(Buffer.alloc(64)) }, [caBlob])), 'CERT_BAD_SIGNATURE');
    const badTrust = new SshWriter().string('ssh-ed25519').string(Buffer.alloc(31)).toBuffer();
    assert.equal(certCode(() => verifyCertificateSignature({ ...c, signatureKey: badTrust }, [badTrust])), 'CERT_BAD_CA_KEY');
  });

  it('stringOptionValue refuses data that is not exactly one string', () => {
    assert.equal(stringOptionValue(stringOption('a', 'v')), 'v');
    assert.equal(certCode(() => stringOptionValue(flagOption('a'))), 'CERT_TRUNCATED');
    assert.equal(certCode(() => stringOptionValue({ name: 'a', data: Buffer.from('0000000176ff', 'hex') })), 'CERT_TRAILING_BYTES');
  });

  it('certificate lines: type-checked and base64-checked', () => {
    assert.deepEqual(parseCertificateLine(formatCertificateLine(leaseBlob, 'c')), leaseBlob);
    assert.equal(certCode(() => parseCertificateLine(readFixture('user.pub'))), 'CERT_BAD_KEY_TYPE');
    assert.equal(certCode(() => parseCertificateLine('garbage')), 'CERT_BAD_LINE');
    assert.equal(certCode(() => parseCertificateLine(`ssh-ed25519 ${leaseBlob.toString('base64')}`)), 'CERT_BAD_LINE');
  });
});

/**
 * Property-based robustness: whatever bytes arrive, parseCertificate throws CertificateError and
 * nothing else; and no change to a signed certificate survives parse + verify.
 */
describe('parseCertificate on hostile input (property)', () => {
  const seeds = [leaseBlob, ...CERT_FIXTURES.map((n) => parseCertificateLine(readFixture(`${n}-cert.pub`))), rawCert()];
  const seed = fc.constantFrom(...seeds);

  /** Parse, then verify; returns 'accepted' only if both pass. Any non-CertificateError fails the property. */
  function outcome(blob: Buffer): 'accepted' | 'rejected' {
    try {
      verifyCertificateSignature(parseCertificate(blob), [caBlob]);
      return 'accepted';
    } catch (err) {
      if (!(err instanceof CertificateError)) throw new Error(`non-CertificateError escaped: ${String(err)}`, { cause: err });
      assert.match(err.code, /^CERT_[A-Z0-9_]+$/);
      return 'rejected';
    }
  }

  it('any single-byte change is rejected', () => {
    fc.assert(
      fc.property(seed, fc.nat(), fc.integer({ min: 1, max: 255 }), (blob, pos, x) => {
        const b = Buffer.from(blob);
        const i = pos % b.length;
        b[i] = (b[i] as number) ^ x;
        assert.equal(outcome(b), 'rejected');
      }),
      { numRuns: 3000 },
    );
  });

  it('any truncation or extension is rejected', () => {
    fc.assert(
      fc.property(seed, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (blob, cut, extra) => {
        assert.equal(outcome(blob.subarray(0, cut % blob.length)), 'rejected');
        assert.equal(outcome(Buffer.concat([blob, extra])), 'rejected');
      }),
      { numRuns: 1500 },
    );
  });

  it('random values written over length fields are rejected', () => {
    fc.assert(
      fc.property(seed, fc.nat(), fc.oneof(fc.nat({ max: 0xffff_ffff }), fc.integer({ min: 0, max: 300 })), (blob, pos, v) => {
        const b = Buffer.from(blob);
        const i = pos % (b.length - 3);
        if (b.readUInt32BE(i) === v) return;
        b.writeUInt32BE(v, i);
        assert.equal(outcome(b), 'rejected');
      }),
      { numRuns: 3000 },
    );
  });

  it('random buffers, with and without a valid prefix, only ever throw CertificateError', () => {
    const prefix = new SshWriter().string(CERT_KEY_TYPE).toBuffer();
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 600 }), (withPrefix, bytes) => {
        const b = withPrefix ? Buffer.concat([prefix, bytes]) : Buffer.from(bytes);
        assert.equal(outcome(b), 'rejected');
      }),
      { numRuns: 2000 },
    );
  });

  it('structurally random fields parse or throw CertificateError; valid ones round-trip', () => {
    let accepted = 0;
    const byName = (a: [string, Uint8Array], b: [string, Uint8Array]) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]));
    // Mostly sorted and unique (valid), sometimes as generated (often invalid).
    const optionList = fc
      .tuple(fc.nat({ max: 4 }), fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.uint8Array({ maxLength: 16 })), { maxLength: 4 }))
      .map(([mode, list]) => (mode === 0 ? list : [...new Map(list).entries()].sort(byName)));
    const mostly = <T>(valid: fc.Arbitrary<T>, any: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: any });
    fc.assert(
      fc.property(
        fc.record({
          nonce: mostly(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 10, maxLength: 70 })),
          publicKey: mostly(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 31, maxLength: 33 })),
          serial: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          typeCode: mostly(fc.constantFrom(1, 2), fc.integer({ min: 0, max: 3 })),
          keyId: fc.string({ maxLength: 20, unit: 'grapheme' }),
          principals: fc.array(fc.string({ maxLength: 8 }), { maxLength: 5 }),
          validAfter: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          validBefore: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          critical: optionList,
          extensions: optionList,
        }),
        (r) => {
          const blob = rawCert({
            ...r,
            nonce: Buffer.from(r.nonce),
            publicKey: Buffer.from(r.publicKey),
            principals: strings(r.principals),
            critical: options(r.critical.map(([n, d]) => [n, Buffer.from(d)])),
            extensions: options(r.extensions.map(([n, d]) => [n, Buffer.from(d)])),
          });
          if (outcome(blob) === 'accepted') {
            accepted++;
            const c = parseCertificate(blob);
            assert.deepEqual(c.principals, r.principals);
            // The parser accepts what OpenSSH accepts; our encoder refuses a wildcard principal list
            // and an empty validity window, so only those differ.
            if (c.principals.length === 0) {
              assert.equal(certCode(() => encodeCertificate(templateOf(c), ca.privateKey)), 'CERT_NO_PRINCIPALS');
            } else if (c.validAfter > c.validBefore) {
              assert.equal(certCode(() => encodeCertificate(templateOf(c), ca.privateKey)), 'CERT_BAD_VALIDITY');
            } else {
              assert.deepEqual(encodeCertificate(templateOf(c), ca.privateKey), blob);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
    assert.ok(accepted > 200, `only ${accepted} generated certificates were valid; the generator is too hostile`);
  });
});
