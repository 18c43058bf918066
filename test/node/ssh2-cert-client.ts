/**
 * An ssh2 Client that authenticates with an OpenSSH certificate, for tests that need what the
 * OpenSSH CLI cannot do (the `lease-renew@tunnel` global request). Thin wrappers over the CLI's
 * own implementation (cli/ssh/ssh2-cert-auth.ts, proven against a real sshd in test/interop), so
 * the relay is tested with the client the product ships.
 */
import type { KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import { Client } from 'ssh2';
import { certIdentity, sendGlobalRequest } from '../../cli/ssh/ssh2-cert-auth.js';
import { encodeLeaseRenew, LEASE_RENEW_REQUEST } from '../../protocol/lease-renew.js';
import { parseKeyLine } from '../../protocol/ssh-key.js';

export interface CertClientOptions {
  port: number;
  username: string;
  privateKey: KeyObject;
  certificate: Buffer;
  hostKeyLine: string;
  host?: string;
  /** Source address to connect from (e.g. 127.0.0.2, to be another source on loopback). */
  localAddress?: string;
  /** ssh2 cipher list, e.g. ['aes128-gcm@openssh.com'] (default: ssh2's). */
  ciphers?: string[];
  /** Software version in the identification line (default: ssh2's); `tunnel-cli` is what the CLI sends. */
  ident?: string;
  /** A TCP connection to the relay already open: the handshake runs over it (port and host unused). */
  sock?: Socket;
  /** ssh2's debug lines (`Inbound: GLOBAL_REQUEST (keepalive@openssh.com)`, ...). */
  debug?: (line: string) => void;
}

/** Connects and authenticates; rejects with ssh2's error (level 'client-authentication' on refusal). */
export function connectWithCertificate(o: CertClientOptions): Promise<Client> {
  const client = new Client();
  const hostBlob = parseKeyLine(o.hostKeyLine).blob;
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      client.off('ready', onReady);
      reject(err);
    };
    const onReady = () => {
      client.off('error', onError);
      resolve(client);
    };
    client.once('ready', onReady).once('error', onError);
    client.on('error', () => {}); // a second error (e.g. reset after a failed handshake) must not crash the caller
    client.connect({
      host: o.host ?? '127.0.0.1',
      port: o.port,
      ...(o.sock ? { sock: o.sock } : {}),
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      username: o.username,
      hostVerifier: (key: Buffer) => key.equals(hostBlob),
      authHandler: [{ type: 'publickey', username: o.username, key: certIdentity(o.privateKey, o.certificate) }] as never,
      readyTimeout: 10_000,
      ...(o.ciphers ? { algorithms: { cipher: o.ciphers as never } } : {}),
      ...(o.ident ? { ident: o.ident } : {}),
      ...(o.debug ? { debug: o.debug } : {}),
    });
  });
}

/** Sends `lease-renew@tunnel` with the new certificate; resolves true on SUCCESS. */
export function renewLease(client: Client, certificate: Buffer): Promise<boolean> {
  return sendGlobalRequest(client, LEASE_RENEW_REQUEST, encodeLeaseRenew(certificate));
}
