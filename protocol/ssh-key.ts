/**
 * Ed25519 keys and signatures in OpenSSH's encodings: public key blobs (RFC 8709 §4),
 * `authorized_keys`-style one-line format, SHA256 fingerprints as `ssh-keygen -l` prints them,
 * signature blobs, and the unencrypted `openssh-key-v1` private key file (OpenSSH PROTOCOL.key).
 */
import { createPrivateKey, hash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { SshReader, SshWireError, SshWriter } from './ssh-wire.js';

export const ED25519_KEY_TYPE = 'ssh-ed25519';
export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;

export type SshKeyErrorCode =
  | 'KEY_MALFORMED'
  | 'KEY_BAD_TYPE'
  | 'KEY_LENGTH'
  | 'KEY_BAD_LINE'
  | 'KEY_ENCRYPTED'
  | 'KEY_MISMATCH'
  | 'KEY_SMALL_ORDER';

export class SshKeyError extends Error {
  override readonly name = 'SshKeyError';
  constructor(
    readonly code: SshKeyErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Runs a parser and turns wire-level failures into SshKeyError. */
function parsing<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SshWireError) throw new SshKeyError('KEY_MALFORMED', `malformed ${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

function expectType(r: SshReader, expected: string): void {
  const type = r.string(64);
  if (!type.equals(Buffer.from(expected))) throw new SshKeyError('KEY_BAD_TYPE', `expected key type ${expected}`);
}

function expectLength(b: Buffer, n: number, what: string): Buffer {
  if (b.length !== n) throw new SshKeyError('KEY_LENGTH', `${what} must be ${n} bytes, got ${b.length}`);
  return b;
}

/**
 * Public key blob:
 *   string "ssh-ed25519"
 *   string pk (32 bytes)
 */
export function encodePublicKeyBlob(publicKey: Buffer): Buffer {
  expectLength(publicKey, ED25519_PUBLIC_KEY_LENGTH, 'ed25519 public key');
  return new SshWriter().string(ED25519_KEY_TYPE).string(publicKey).toBuffer();
}

/**
 * The y coordinates (little-endian, sign bit clear) of the Ed25519 points of small order, as
 * libsodium lists them (ge25519_has_small_order, which crypto_sign_ed25519 refuses keys by):
 * 0 (order 4), 1 (order 1), the two of the order-8 points, p-1 (order 2), and the non-canonical
 * p (= 0) and p+1 (= 1). With either sign bit they are the 8 small-order points and their
 * non-canonical encodings (14 in all).
 */
const SMALL_ORDER_Y = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => Buffer.from(h, 'hex'));

/**
 * Whether a 32-byte Ed25519 public key encodes a point of small order (either sign bit). No
 * private key has one; for such a key, signatures that verify (in verifiers that do not refuse
 * it, OpenSSL among them) can be made without any secret: a certificate for one would be usable
 * by whoever saw it.
 */
export function isSmallOrderEd25519(publicKey: Buffer): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) return false;
  const y = Buffer.from(publicKey);
  y[31] = y[31]! & 0x7f;
  return SMALL_ORDER_Y.some((s) => s.equals(y));
}

/** The message of a KEY_SMALL_ORDER refusal (for an API answer), else undefined. */
export function weakKey(err: unknown): string | undefined {
  return err instanceof SshKeyError && err.code === 'KEY_SMALL_ORDER' ? err.message : undefined;
}

/**
 * Returns the 32-byte raw key of an `ssh-ed25519` blob; no trailing bytes allowed. A key of small
 * order (isSmallOrderEd25519) is refused: KEY_SMALL_ORDER.
 */
export function parsePublicKeyBlob(blob: Buffer): Buffer {
  const pk = parsing('public key blob', () => {
    const r = new SshReader(blob);
    expectType(r, ED25519_KEY_TYPE);
    const pk = expectLength(r.string(64), ED25519_PUBLIC_KEY_LENGTH, 'ed25519 public key');
    r.end();
    return pk;
  });
  if (isSmallOrderEd25519(pk)) {
    throw new SshKeyError('KEY_SMALL_ORDER', 'an ed25519 key of small order (a weak point such as all zero bytes), which no private key has; signatures for it can be forged');
  }
  return pk;
}

/** `SHA256:<unpadded base64 of sha256(blob)>`, exactly as `ssh-keygen -lf` prints it. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${hash('sha256', blob, 'base64').replace(/=+$/, '')}`;
}

export interface PublicKeyLine {
  type: string;
  blob: Buffer;
  comment: string;
}

/**
 * Splits an OpenSSH one-line public key (`type base64 [comment]`) and checks that the type
 * named in the text matches the type inside the blob. Works for any key or certificate type;
 * callers decode the blob with the parser for the type they accept.
 */
export function parseKeyLine(line: string): PublicKeyLine {
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new SshKeyError('KEY_BAD_LINE', 'not an OpenSSH public key line');
  const type = m[1] as string;
  const b64 = m[2] as string;
  const blob = Buffer.from(b64, 'base64');
  if (blob.toString('base64') !== b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')) {
    throw new SshKeyError('KEY_BAD_LINE', 'invalid base64 in key line');
  }
  const inner = parsing('key line', () => new SshReader(blob).string(128));
  if (!inner.equals(Buffer.from(type))) throw new SshKeyError('KEY_BAD_TYPE', 'key line type does not match its blob');
  return { type, blob, comment: m[3] ?? '' };
}

/** Parses an `ssh-ed25519 AAAA... comment` line into its raw key, blob and comment. */
export function parsePublicKeyLine(line: string): { publicKey: Buffer; blob: Buffer; comment: string } {
  const { type, blob, comment } = parseKeyLine(line);
  if (type !== ED25519_KEY_TYPE) throw new SshKeyError('KEY_BAD_TYPE', `expected ${ED25519_KEY_TYPE}`);
  return { publicKey: parsePublicKeyBlob(blob), blob, comment };
}

/** Formats a 32-byte raw key as `ssh-ed25519 AAAA... [comment]`. */
export function formatPublicKeyLine(publicKey: Buffer, comment?: string): string {
  const b64 = encodePublicKeyBlob(publicKey).toString('base64');
  return comment ? `${ED25519_KEY_TYPE} ${b64} ${comment}` : `${ED25519_KEY_TYPE} ${b64}`;
}

/**
 * A KeyObject's raw public key, once per KeyObject (they are immutable): the control plane's CA
 * key goes into every certificate it signs, and deriving and exporting it each time was about
 * half a percent of a lease's CPU (issue 11). Callers get a copy.
 */
const rawPublicKeys = new WeakMap<KeyObject, Buffer>();

/** SubjectPublicKeyInfo DER of an Ed25519 key up to the key itself (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** The 32-byte raw public key of an ed25519 KeyObject (public or private). */
export function rawPublicKey(key: KeyObject): Buffer {
  let raw = rawPublicKeys.get(key);
  if (raw === undefined) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    if (pub.asymmetricKeyType !== 'ed25519') throw new SshKeyError('KEY_BAD_TYPE', 'only ed25519 keys are supported');
    // From the SPKI DER (a fixed 12-byte prefix, then the key), not the JWK: Node 20's JWK
    // export could deadlock in a GC it triggers while holding the key's lock (seen in
    // bench:control: ExportJWKEdKey -> GC -> ~KeyGenJob waiting on the same mutex).
    raw = derTail(pub.export({ type: 'spki', format: 'der' }), ED25519_SPKI_PREFIX, 'not an ed25519 public key');
    rawPublicKeys.set(key, raw);
  }
  return Buffer.from(raw);
}

/** PKCS#8 DER of an Ed25519 private key up to its 32-byte seed (RFC 8410, version 1, no public key). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The 32-byte seed of an ed25519 private KeyObject, from its PKCS#8 DER, not its JWK: under Node
 * 20 the JWK export holds the key's lock while it allocates, and a GC it triggers there can run
 * ~KeyGenJob of the generateKeyPairSync that made this key, which waits on the same lock for ever
 * (rawPublicKey). That hung node/channel-memory.test (formatOpenSshPrivateKey of a fresh host key)
 * now and then, and could hang the relay's enrollment, `tunnel cert` and the CLI's ssh2 login
 * (cli/ssh/ssh2-cert-auth.ts) the same way.
 */
export function ed25519Seed(privateKey: KeyObject): Buffer {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new SshKeyError('KEY_BAD_TYPE', 'expected an ed25519 private KeyObject');
  }
  return derTail(privateKey.export({ type: 'pkcs8', format: 'der' }), ED25519_PKCS8_PREFIX, 'not an ed25519 private key');
}

/** The 32 key bytes after an Ed25519 DER's fixed `prefix` (SPKI or PKCS#8, RFC 8410), as a copy; KEY_BAD_TYPE (`what`) for any other DER. */
function derTail(der: Buffer, prefix: Buffer, what: string): Buffer {
  if (der.length !== prefix.length + 32 || !der.subarray(0, prefix.length).equals(prefix)) throw new SshKeyError('KEY_BAD_TYPE', what);
  return Buffer.from(der.subarray(prefix.length));
}

/** The SSH public key blob of an ed25519 KeyObject (public or private). */
export function publicKeyBlob(key: KeyObject): Buffer {
  return encodePublicKeyBlob(rawPublicKey(key));
}

/** A node:crypto public KeyObject from a 32-byte raw ed25519 key. */
export function publicKeyObject(publicKey: Buffer): KeyObject {
  expectLength(publicKey, ED25519_PUBLIC_KEY_LENGTH, 'ed25519 public key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
}

/** A node:crypto public KeyObject from an `ssh-ed25519` blob. */
export function publicKeyObjectFromBlob(blob: Buffer): KeyObject {
  return publicKeyObject(parsePublicKeyBlob(blob));
}

/**
 * Signature blob (RFC 8709 §6):
 *   string "ssh-ed25519"
 *   string sig (64 bytes)
 */
export function encodeSignatureBlob(signature: Buffer): Buffer {
  expectLength(signature, ED25519_SIGNATURE_LENGTH, 'ed25519 signature');
  return new SshWriter().string(ED25519_KEY_TYPE).string(signature).toBuffer();
}

/** Returns the 64-byte signature of an `ssh-ed25519` signature blob; no trailing bytes allowed. */
export function parseSignatureBlob(blob: Buffer): Buffer {
  return parsing('signature blob', () => {
    const r = new SshReader(blob);
    expectType(r, ED25519_KEY_TYPE);
    const sig = expectLength(r.string(128), ED25519_SIGNATURE_LENGTH, 'ed25519 signature');
    r.end();
    return sig;
  });
}

const PRIVATE_KEY_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PEM_END = '-----END OPENSSH PRIVATE KEY-----';

/**
 * Formats an ed25519 private key as an unencrypted OpenSSH private key file, readable by
 * `ssh -i` and `ssh-keygen -y`. Layout (PROTOCOL.key):
 *   byte[15] "openssh-key-v1\0"
 *   string   ciphername "none"
 *   string   kdfname "none"
 *   string   kdfoptions ""
 *   uint32   number of keys (1)
 *   string   public key blob
 *   string   private section, padded with 1,2,3,... to a multiple of 8:
 *              uint32 checkint, uint32 checkint (equal; random)
 *              string "ssh-ed25519", string pk32, string seed32||pk32, string comment
 * `checkint` may be fixed for reproducible output.
 */
export function formatOpenSshPrivateKey(privateKey: KeyObject, comment = '', checkint?: number): string {
  const seed = ed25519Seed(privateKey);
  const pk = rawPublicKey(privateKey);
  const check = checkint ?? randomBytes(4).readUInt32BE();
  const priv = new SshWriter()
    .uint32(check)
    .uint32(check)
    .string(ED25519_KEY_TYPE)
    .string(pk)
    .string(Buffer.concat([seed, pk]))
    .string(comment);
  for (let i = 1; priv.length % 8 !== 0; i++) priv.uint8(i);
  const body = new SshWriter()
    .bytes(PRIVATE_KEY_MAGIC)
    .string('none')
    .string('none')
    .string('')
    .uint32(1)
    .string(encodePublicKeyBlob(pk))
    .string(priv.toBuffer())
    .toBuffer()
    .toString('base64');
  const lines = body.match(/.{1,70}/g) ?? [];
  return `${PEM_BEGIN}\n${lines.join('\n')}\n${PEM_END}\n`;
}

/** Reads an unencrypted ed25519 OpenSSH private key file (as written by ssh-keygen or formatOpenSshPrivateKey). */
export function parseOpenSshPrivateKey(text: string): { privateKey: KeyObject; publicKey: Buffer; comment: string } {
  const m = new RegExp(`${PEM_BEGIN}([A-Za-z0-9+/=\\s]+)${PEM_END}`).exec(text);
  if (!m) throw new SshKeyError('KEY_BAD_LINE', 'not an OpenSSH private key file');
  const raw = Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64');
  return parsing('private key', () => {
    const r = new SshReader(raw);
    if (!r.bytes(PRIVATE_KEY_MAGIC.length).equals(PRIVATE_KEY_MAGIC)) throw new SshKeyError('KEY_MALFORMED', 'bad magic');
    const cipher = r.text(64);
    const kdf = r.text(64);
    r.string(1024);
    if (cipher !== 'none' || kdf !== 'none') throw new SshKeyError('KEY_ENCRYPTED', 'encrypted private keys are not supported');
    if (r.uint32() !== 1) throw new SshKeyError('KEY_MALFORMED', 'expected exactly one key');
    const pubBlob = r.string(1024);
    const p = new SshReader(r.string(4096));
    r.end();
    if (p.uint32() !== p.uint32()) throw new SshKeyError('KEY_MALFORMED', 'checkint mismatch');
    expectType(p, ED25519_KEY_TYPE);
    const pk = expectLength(p.string(64), 32, 'ed25519 public key');
    const sk = expectLength(p.string(128), 64, 'ed25519 private key');
    const comment = p.text(1024);
    for (let i = 1; p.remaining() > 0; i++) {
      if (p.uint8() !== i) throw new SshKeyError('KEY_MALFORMED', 'bad padding');
    }
    if (!pk.equals(parsePublicKeyBlob(pubBlob)) || !pk.equals(sk.subarray(32))) {
      throw new SshKeyError('KEY_MISMATCH', 'public and private parts disagree');
    }
    const privateKey = createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: sk.subarray(0, 32).toString('base64url'), x: pk.toString('base64url') },
      format: 'jwk',
    });
    if (!rawPublicKey(privateKey).equals(pk)) throw new SshKeyError('KEY_MISMATCH', 'public key does not match the seed');
    return { privateKey, publicKey: pk, comment };
  });
}
