/**
 * An ssh2 Client that authenticates with an OpenSSH certificate, for tests that need what the
 * OpenSSH CLI cannot do (the `lease-renew@tunnel` global request). ssh2 has no certificate
 * support on the client side, so this replaces the connection's `authPK` with one that sends
 * the certificate under its algorithm and signs with the plain key, exactly as OpenSSH does
 * (signature blob type "ssh-ed25519").
 */
import { sign, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import ssh2 from 'ssh2';
import { LEASE_RENEW_REQUEST } from '../../protocol/lease-claims.js';
import { CERT_KEY_TYPE } from '../../protocol/ssh-cert.js';
import { encodeSignatureBlob, formatOpenSshPrivateKey, parseKeyLine } from '../../protocol/ssh-key.js';
import { SshWriter } from '../../protocol/ssh-wire.js';

const require = createRequire(import.meta.url);
const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket(proto: unknown, packet: Buffer): void };

const USERAUTH_REQUEST = 50;
const GLOBAL_REQUEST = 80;

interface ProtoInternals {
  _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
  _kex: { sessionID: Buffer };
  _authsQueue: string[];
  authPK: (...args: unknown[]) => void;
}
interface ClientInternals {
  _protocol: ProtoInternals;
  _callbacks: ((hadErr: boolean, data?: Buffer) => void)[];
}

function send(proto: ProtoInternals, payload: Buffer): void {
  const w = proto._packetRW.write;
  const packet = w.alloc(payload.length);
  packet.set(payload, w.allocStart);
  sendPacket(proto, w.finalize(packet));
}

export async function connectWithCertificate(opts: {
  port: number;
  username: string;
  privateKey: KeyObject;
  certificate: Buffer;
  hostKeyLine: string;
}): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  const hostBlob = parseKeyLine(opts.hostKeyLine).blob;
  const ready = new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve());
    client.once('error', reject);
  });
  client.connect({
    host: '127.0.0.1',
    port: opts.port,
    username: opts.username,
    privateKey: formatOpenSshPrivateKey(opts.privateKey),
    hostVerifier: (key: Buffer) => key.equals(hostBlob),
    readyTimeout: 10_000,
  });
  const proto = (client as unknown as ClientInternals)._protocol;
  proto.authPK = (username: unknown, _key: unknown, _algo: unknown, cbSign?: unknown) => {
    const body = new SshWriter()
      .uint8(USERAUTH_REQUEST)
      .string(String(username))
      .string('ssh-connection')
      .string('publickey')
      .uint8(cbSign ? 1 : 0)
      .string(CERT_KEY_TYPE)
      .string(opts.certificate);
    proto._authsQueue.push('publickey');
    if (!cbSign) return send(proto, body.toBuffer());
    const signed = Buffer.concat([new SshWriter().string(proto._kex.sessionID).toBuffer(), body.toBuffer()]);
    const sig = encodeSignatureBlob(sign(null, signed, opts.privateKey));
    send(proto, Buffer.concat([body.toBuffer(), new SshWriter().string(sig).toBuffer()]));
  };
  await ready;
  return client;
}

/** Sends `lease-renew@tunnel` with the new certificate; resolves true on SUCCESS. */
export function renewLease(client: ssh2.Client, certificate: Buffer): Promise<boolean> {
  const c = client as unknown as ClientInternals;
  return new Promise((resolve) => {
    c._callbacks.push((hadErr) => resolve(!hadErr));
    send(c._protocol, new SshWriter().uint8(GLOBAL_REQUEST).string(LEASE_RENEW_REQUEST).uint8(1).string(certificate).toBuffer());
  });
}
