/**
 * OpenSSH certificates (PROTOCOL.certkeys), `ssh-ed25519-cert-v01@openssh.com` only: encode
 * and sign, parse strictly, verify against trusted CA keys. Written once here and shared by the
 * control plane (issuing) and the relay (checking); ssh2 does not parse certificates.
 *
 * Certificate blob layout:
 *   string  "ssh-ed25519-cert-v01@openssh.com"
 *   string  nonce               (CA-chosen random bytes; 32 by default)
 *   string  pk                  (32-byte raw ed25519 key being certified)
 *   uint64  serial
 *   uint32  type                (1 = user, 2 = host)
 *   string  key id
 *   string  valid principals    (nested: zero or more `string principal`)
 *   uint64  valid after         (seconds since epoch; valid when after <= now < before)
 *   uint64  valid before
 *   string  critical options    (nested: zero or more `string name, string data`)
 *   string  extensions          (same nested layout)
 *   string  reserved
 *   string  signature key       (CA public key blob)
 *   string  signature           (`string "ssh-ed25519", string sig64` over every byte above)
 *
 * An option's `data` is itself wrapped: ssh-keygen writes `-O extension:name=value` as
 * data = `string value`, and a flag (e.g. `permit-port-forwarding`) as empty data.
 */
import { randomBytes, verify, sign, type KeyObject } from 'node:crypto';
import { SshReader, SshWireError, SshWriter } from './ssh-wire.js';
import {
  ED25519_KEY_TYPE,
  SshKeyError,
  encodeSignatureBlob,
  isSmallOrderEd25519,
  parseKeyLine,
  publicKeyBlob,
  publicKeyObjectFromBlob,
} from './ssh-key.js';

export const CERT_KEY_TYPE = 'ssh-ed25519-cert-v01@openssh.com';

/** Caps applied by parseCertificate (and by encodeCertificate, so we never issue what we'd refuse). */
export const CERT_LIMITS = Object.freeze({
  blob: 16 * 1024,
  nonceMin: 16,
  nonceMax: 64,
  keyId: 1024,
  principals: 256,
  principal: 256,
  options: 64,
  optionName: 256,
  optionData: 8 * 1024,
  reserved: 256,
});

export type CertType = 'user' | 'host';

export interface CertOption {
  name: string;
  /** The raw option data field; see stringOptionValue. */
  data: Buffer;
}

export interface SshCertificate {
  nonce: Buffer;
  /** 32-byte raw ed25519 key. */
  publicKey: Buffer;
  serial: bigint;
  type: CertType;
  keyId: string;
  principals: string[];
  /** Seconds since epoch, uint64. */
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: CertOption[];
  extensions: CertOption[];
  reserved: Buffer;
  /** CA public key blob. */
  signatureKey: Buffer;
  /** Signature blob (`string "ssh-ed25519", string sig64`). */
  signature: Buffer;
  /** Every byte before the signature field: what the CA signed. Verification uses this, not the fields. */
  signedData: Buffer;
  /** The whole certificate blob. */
  raw: Buffer;
}

export interface CertificateTemplate {
  publicKey: Buffer;
  serial: bigint;
  type: CertType;
  keyId: string;
  /** At least one: OpenSSH treats an empty list as "any principal". */
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions?: CertOption[];
  extensions?: CertOption[];
  /** Defaults to 32 random bytes. */
  nonce?: Buffer;
}

export type CertErrorCode =
  | 'CERT_TRUNCATED'
  | 'CERT_TRAILING_BYTES'
  | 'CERT_TOO_LARGE'
  | 'CERT_LENGTH'
  | 'CERT_BAD_UTF8'
  | 'CERT_BAD_KEY_TYPE'
  | 'CERT_BAD_TYPE'
  | 'CERT_BAD_NONCE'
  | 'CERT_TOO_MANY_PRINCIPALS'
  | 'CERT_NO_PRINCIPALS'
  | 'CERT_TOO_MANY_OPTIONS'
  | 'CERT_OPTIONS_ORDER'
  | 'CERT_BAD_OPTION'
  | 'CERT_BAD_VALIDITY'
  | 'CERT_BAD_SIGNATURE_ALGORITHM'
  | 'CERT_BAD_SIGNATURE'
  | 'CERT_UNTRUSTED_CA'
  | 'CERT_BAD_CA_KEY'
  | 'CERT_WEAK_KEY'
  | 'CERT_BAD_LINE';

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  constructor(
    readonly code: CertErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const WIRE_TO_CERT: Record<SshWireError['code'], CertErrorCode> = {
  WIRE_TRUNCATED: 'CERT_TRUNCATED',
  WIRE_TRAILING_BYTES: 'CERT_TRAILING_BYTES',
  WIRE_TOO_LONG: 'CERT_LENGTH',
  WIRE_BAD_UTF8: 'CERT_BAD_UTF8',
  WIRE_RANGE: 'CERT_LENGTH',
};

/** Runs fn, translating wire and key errors so callers only ever see CertificateError. */
function certErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CertificateError) throw err;
    if (err instanceof SshWireError) throw new CertificateError(WIRE_TO_CERT[err.code], err.message, { cause: err });
    if (err instanceof SshKeyError) {
      const code = err.code === 'KEY_LENGTH' ? 'CERT_LENGTH' : 'CERT_BAD_KEY_TYPE';
      throw new CertificateError(code, err.message, { cause: err });
    }
    throw err;
  }
}

const SMALL_ORDER_KEY = 'the certified ed25519 key is of small order (no private key has it; signatures for it can be forged)';

function fail(code: CertErrorCode, message: string): never {
  throw new CertificateError(code, message);
}

const CERT_TYPE_CODES: Record<CertType, number> = { user: 1, host: 2 };

/** Strict byte-wise (strcmp) order without duplicates, as OpenSSH requires for option names. */
function checkOptionOrder(options: readonly CertOption[], what: string): void {
  if (options.length > CERT_LIMITS.options) fail('CERT_TOO_MANY_OPTIONS', `too many ${what}`);
  for (let i = 1; i < options.length; i++) {
    const prev = Buffer.from((options[i - 1] as CertOption).name);
    const cur = Buffer.from((options[i] as CertOption).name);
    if (Buffer.compare(prev, cur) >= 0) fail('CERT_OPTIONS_ORDER', `${what} must be sorted and unique`);
  }
}

function encodeOptions(options: readonly CertOption[], what: string): Buffer {
  const sorted = [...options].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  checkOptionOrder(sorted, what);
  const w = new SshWriter();
  for (const o of sorted) {
    if (o.name.length === 0 || Buffer.byteLength(o.name) > CERT_LIMITS.optionName) fail('CERT_BAD_OPTION', `bad ${what} name`);
    if (o.data.length > CERT_LIMITS.optionData) fail('CERT_LENGTH', `${what} data too long`);
    w.string(o.name).string(o.data);
  }
  return w.toBuffer();
}

function parseOptions(section: Buffer, what: string): CertOption[] {
  const r = new SshReader(section);
  const out: CertOption[] = [];
  while (r.remaining() > 0) {
    if (out.length >= CERT_LIMITS.options) fail('CERT_TOO_MANY_OPTIONS', `too many ${what}`);
    const name = r.text(CERT_LIMITS.optionName);
    if (name.length === 0) fail('CERT_BAD_OPTION', `empty ${what} name`);
    out.push({ name, data: r.string(CERT_LIMITS.optionData) });
  }
  checkOptionOrder(out, what);
  return out;
}

/**
 * Builds and signs a certificate. Options are sorted by name; duplicates, empty principal
 * lists and anything parseCertificate would refuse are rejected with CertificateError.
 */
export function encodeCertificate(t: CertificateTemplate, caPrivateKey: KeyObject): Buffer {
  return certErrors(() => {
    const nonce = t.nonce ?? randomBytes(32);
    if (t.publicKey.length !== 32) fail('CERT_LENGTH', 'ed25519 public key must be 32 bytes');
    if (isSmallOrderEd25519(t.publicKey)) fail('CERT_WEAK_KEY', SMALL_ORDER_KEY);
    if (nonce.length < CERT_LIMITS.nonceMin || nonce.length > CERT_LIMITS.nonceMax) fail('CERT_BAD_NONCE', 'bad nonce length');
    if (t.principals.length === 0) fail('CERT_NO_PRINCIPALS', 'a certificate needs at least one principal');
    if (t.principals.length > CERT_LIMITS.principals) fail('CERT_TOO_MANY_PRINCIPALS', 'too many principals');
    if (t.principals.some((p) => Buffer.byteLength(p) > CERT_LIMITS.principal)) fail('CERT_LENGTH', 'principal too long');
    if (Buffer.byteLength(t.keyId) > CERT_LIMITS.keyId) fail('CERT_LENGTH', 'key id too long');
    if (t.validAfter > t.validBefore) fail('CERT_BAD_VALIDITY', 'validAfter is after validBefore');
    const principals = new SshWriter();
    for (const p of t.principals) principals.string(p);
    const caBlob = publicKeyBlob(caPrivateKey);
    const w = new SshWriter()
      .string(CERT_KEY_TYPE)
      .string(nonce)
      .string(t.publicKey)
      .uint64(t.serial)
      .uint32(CERT_TYPE_CODES[t.type])
      .string(t.keyId)
      .string(principals.toBuffer())
      .uint64(t.validAfter)
      .uint64(t.validBefore)
      .string(encodeOptions(t.criticalOptions ?? [], 'critical options'))
      .string(encodeOptions(t.extensions ?? [], 'extensions'))
      .string(Buffer.alloc(0))
      .string(caBlob);
    const signedData = w.toBuffer();
    const blob = w.string(encodeSignatureBlob(sign(null, signedData, caPrivateKey))).toBuffer();
    if (blob.length > CERT_LIMITS.blob) fail('CERT_TOO_LARGE', `certificate of ${blob.length} bytes exceeds ${CERT_LIMITS.blob}`);
    return blob;
  });
}

/** Reads `string "ssh-ed25519", string <n bytes>` exactly, as used by both key and signature blobs. */
function parseEd25519Pair(blob: Buffer, n: number, badType: CertErrorCode, what: string): Buffer {
  const r = new SshReader(blob);
  if (!r.string(64).equals(Buffer.from(ED25519_KEY_TYPE))) fail(badType, `${what} is not ssh-ed25519`);
  const value = r.string(128);
  if (value.length !== n) fail('CERT_LENGTH', `${what} must be ${n} bytes`);
  r.end();
  return value;
}

/**
 * Parses a certificate blob strictly: exact key type, 32-byte keys, ed25519 CA and signature,
 * bounded lengths, sorted unique options, UTF-8 text, no trailing bytes at any level.
 * Does NOT verify the signature or validity window: see verifyCertificateSignature.
 * Throws CertificateError only.
 */
export function parseCertificate(blob: Buffer): SshCertificate {
  return certErrors(() => {
    if (blob.length > CERT_LIMITS.blob) fail('CERT_TOO_LARGE', `certificate of ${blob.length} bytes exceeds ${CERT_LIMITS.blob}`);
    const r = new SshReader(blob);
    if (!r.string(64).equals(Buffer.from(CERT_KEY_TYPE))) fail('CERT_BAD_KEY_TYPE', `expected ${CERT_KEY_TYPE}`);
    const nonce = r.string(CERT_LIMITS.nonceMax);
    if (nonce.length < CERT_LIMITS.nonceMin) fail('CERT_BAD_NONCE', 'nonce too short');
    const publicKey = r.string(64);
    if (publicKey.length !== 32) fail('CERT_LENGTH', 'ed25519 public key must be 32 bytes');
    // A second line behind the control plane's refusal (ssh-key.ts): whoever saw such a certificate could use it.
    if (isSmallOrderEd25519(publicKey)) fail('CERT_WEAK_KEY', SMALL_ORDER_KEY);
    const serial = r.uint64();
    const typeCode = r.uint32();
    const type: CertType = typeCode === 1 ? 'user' : typeCode === 2 ? 'host' : fail('CERT_BAD_TYPE', `unknown type ${typeCode}`);
    const keyId = r.text(CERT_LIMITS.keyId);
    const pr = new SshReader(r.string(CERT_LIMITS.principals * (4 + CERT_LIMITS.principal)));
    const principals: string[] = [];
    while (pr.remaining() > 0) {
      if (principals.length >= CERT_LIMITS.principals) fail('CERT_TOO_MANY_PRINCIPALS', 'too many principals');
      principals.push(pr.text(CERT_LIMITS.principal));
    }
    const validAfter = r.uint64();
    const validBefore = r.uint64();
    const criticalOptions = parseOptions(r.string(CERT_LIMITS.blob), 'critical options');
    const extensions = parseOptions(r.string(CERT_LIMITS.blob), 'extensions');
    const reserved = r.string(CERT_LIMITS.reserved);
    const signatureKey = r.string(1024);
    parseEd25519Pair(signatureKey, 32, 'CERT_BAD_KEY_TYPE', 'CA key');
    const signedLength = r.offset;
    const signature = r.string(1024);
    parseEd25519Pair(signature, 64, 'CERT_BAD_SIGNATURE_ALGORITHM', 'signature');
    r.end();
    return {
      nonce,
      publicKey,
      serial,
      type,
      keyId,
      principals,
      validAfter,
      validBefore,
      criticalOptions,
      extensions,
      reserved,
      signatureKey,
      signature,
      signedData: Buffer.from(blob.subarray(0, signedLength)),
      raw: Buffer.from(blob),
    };
  });
}

/**
 * Checks that the certificate's CA key is one of `trustedCaBlobs` (exact blob match) and that
 * its signature over `signedData` verifies. Returns the CA blob that verified.
 * Throws CertificateError ('CERT_UNTRUSTED_CA', 'CERT_BAD_SIGNATURE', ...).
 */
export function verifyCertificateSignature(cert: SshCertificate, trustedCaBlobs: Buffer[]): Buffer {
  return certErrors(() => {
    const ca = trustedCaBlobs.find((b) => b.equals(cert.signatureKey));
    if (!ca) fail('CERT_UNTRUSTED_CA', 'certificate is signed by an untrusted CA');
    let caKey: KeyObject;
    try {
      caKey = publicKeyObjectFromBlob(ca);
    } catch (err) {
      throw new CertificateError('CERT_BAD_CA_KEY', 'trusted CA key is not a valid ed25519 key', { cause: err });
    }
    const sig64 = parseEd25519Pair(cert.signature, 64, 'CERT_BAD_SIGNATURE_ALGORITHM', 'signature');
    if (!verify(null, cert.signedData, caKey, sig64)) fail('CERT_BAD_SIGNATURE', 'certificate signature does not verify');
    return ca;
  });
}

/** True when `now` is inside [validAfter, validBefore), OpenSSH's rule. */
export function certificateValidAt(cert: Pick<SshCertificate, 'validAfter' | 'validBefore'>, now: Date): boolean {
  const t = BigInt(Math.floor(now.getTime() / 1000));
  return cert.validAfter <= t && t < cert.validBefore;
}

/**
 * Decodes an option whose data is a single SSH string, as `ssh-keygen -O extension:name=value`
 * and the standard `force-command` / `source-address` options write it.
 */
export function stringOptionValue(opt: CertOption): string {
  return certErrors(() => {
    const r = new SshReader(opt.data);
    const value = r.text(CERT_LIMITS.optionData);
    r.end();
    return value;
  });
}

/** An option carrying a string value (data = `string value`). */
export function stringOption(name: string, value: string): CertOption {
  return { name, data: new SshWriter().string(value).toBuffer() };
}

/** A flag option such as `permit-port-forwarding` (empty data). */
export function flagOption(name: string): CertOption {
  return { name, data: Buffer.alloc(0) };
}

/** `ssh-ed25519-cert-v01@openssh.com AAAA... [comment]`, the format of `*-cert.pub` files. */
export function formatCertificateLine(blob: Buffer, comment?: string): string {
  const b64 = blob.toString('base64');
  return comment ? `${CERT_KEY_TYPE} ${b64} ${comment}` : `${CERT_KEY_TYPE} ${b64}`;
}

/** Returns the certificate blob of a `*-cert.pub` line (type checked; contents not parsed). */
export function parseCertificateLine(line: string): Buffer {
  try {
    const { type, blob } = parseKeyLine(line);
    if (type !== CERT_KEY_TYPE) fail('CERT_BAD_KEY_TYPE', `expected ${CERT_KEY_TYPE}`);
    return blob;
  } catch (err) {
    if (err instanceof SshKeyError) throw new CertificateError('CERT_BAD_LINE', err.message, { cause: err });
    throw err;
  }
}
