import { createRequire } from 'node:module';
import type { KeyObject } from 'node:crypto';
import type { Client, ParsedKey } from 'ssh2';
import type * as Ssh2 from 'ssh2';
import { CERT_KEY_TYPE } from '../../protocol/ssh-cert.js';
import { ED25519_KEY_TYPE, formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';
import { SshWriter } from '../../protocol/ssh-wire.js';

/**
 * OpenSSH user-certificate authentication for the ssh2 client, which has none (ssh2 issue #551).
 *
 * The identity is ssh2's own parsed Ed25519 key with two things changed: its type is the
 * certificate algorithm and its public blob is the certificate, so ssh2 offers the certificate.
 * ssh2 then writes the signature blob with the certificate algorithm as its name, which OpenSSH
 * rejects (the signature of an Ed25519 certificate is an `ssh-ed25519` signature, RFC 4252 §7 and
 * PROTOCOL.certkeys). So for these identities only, the signed USERAUTH_REQUEST is written here.
 * This relies on ssh2 internals (`Protocol#authPK`, `_kex.sessionID`, `_packetRW`, `_authsQueue`);
 * ssh2 is pinned, and test/interop proves the result against a real OpenSSH sshd.
 */

const require = createRequire(import.meta.url);
const ssh2 = require('ssh2') as typeof Ssh2;
const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype: Record<string, unknown> };
const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket: (proto: unknown, packet: Buffer) => void };

const CERT_SIG_ALGO = Symbol('tunnel.certSignatureAlgorithm');
const USERAUTH_REQUEST = 50;
const GLOBAL_REQUEST = 80;

interface ProtocolInternals {
  _kex: { sessionID: Buffer };
  _packetRW: { write: { alloc(n: number): Buffer; allocStart: number; finalize(p: Buffer): Buffer } };
  _authsQueue: string[];
}

type SignCb = (data: Buffer, done: (signature: Buffer) => void) => void;

let installed = false;
function install(): void {
  if (installed) return;
  installed = true;
  const original = Protocol.prototype.authPK as (this: ProtocolInternals, ...args: unknown[]) => void;
  Protocol.prototype.authPK = function authPK(this: ProtocolInternals, ...args: unknown[]) {
    const [username, pubKey, algoOrCb, maybeCb] = args as [string, Record<symbol, unknown> & ParsedKey, unknown, unknown];
    const cbSign = (typeof algoOrCb === 'function' ? algoOrCb : maybeCb) as SignCb | undefined;
    const sigAlgo = pubKey?.[CERT_SIG_ALGO];
    // The unsigned query ("may I use this key?") is correct as ssh2 writes it.
    if (typeof sigAlgo !== 'string' || typeof cbSign !== 'function') return original.apply(this, args);
    const keyAlgo = typeof algoOrCb === 'string' ? algoOrCb : pubKey.type;
    const blob = pubKey.getPublicSSH();
    // RFC 4252 §7: the signature covers session id + the request up to the public key blob.
    const body = new SshWriter()
      .uint8(USERAUTH_REQUEST)
      .string(username)
      .string('ssh-connection')
      .string('publickey')
      .uint8(1)
      .string(keyAlgo)
      .string(blob)
      .toBuffer();
    const toSign = Buffer.concat([new SshWriter().string(this._kex.sessionID).toBuffer(), body]);
    cbSign(toSign, (signature) => {
      const sigBlob = new SshWriter().string(sigAlgo).string(signature).toBuffer();
      const payload = Buffer.concat([body, new SshWriter().string(sigBlob).toBuffer()]);
      sendRaw(this, payload);
      this._authsQueue.push('publickey');
    });
  };
}

function sendRaw(proto: ProtocolInternals, payload: Buffer): void {
  const packet = proto._packetRW.write.alloc(payload.length);
  packet.set(payload, proto._packetRW.write.allocStart);
  sendPacket(proto, proto._packetRW.write.finalize(packet));
}

/**
 * An ssh2 identity that authenticates with an Ed25519 OpenSSH certificate and its private key.
 * Use it as `authHandler: [{ type: 'publickey', username, key: certIdentity(...) }]`.
 */
export function certIdentity(privateKey: KeyObject, certificate: Buffer): ParsedKey {
  install();
  const parsed = ssh2.utils.parseKey(formatOpenSshPrivateKey(privateKey));
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error('cannot load the ed25519 key into ssh2');
  const identity = Object.create(parsed) as ParsedKey & Record<symbol, unknown>;
  Object.defineProperty(identity, 'type', { value: CERT_KEY_TYPE, enumerable: true });
  Object.defineProperty(identity, 'getPublicSSH', { value: () => certificate });
  Object.defineProperty(identity, CERT_SIG_ALGO, { value: ED25519_KEY_TYPE });
  return identity;
}

/**
 * Sends a global request with arbitrary data (ssh2's client only knows a few by name) and
 * resolves with whether the server accepted it. Replies arrive in request order (RFC 4254 §4),
 * so the callback joins ssh2's own queue of pending global requests.
 */
export function sendGlobalRequest(client: Client, name: string, data: Buffer): Promise<boolean> {
  const c = client as unknown as { _protocol?: ProtocolInternals; _callbacks?: ((hadErr: boolean) => void)[] };
  const proto = c._protocol;
  const callbacks = c._callbacks;
  if (!proto || !callbacks) return Promise.reject(new Error('not connected'));
  return new Promise((resolve) => {
    callbacks.push((hadErr) => resolve(!hadErr));
    sendRaw(proto, Buffer.concat([Buffer.from([GLOBAL_REQUEST]), new SshWriter().string(name).uint8(1).toBuffer(), data]));
  });
}
