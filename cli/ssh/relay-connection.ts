import type { KeyObject } from 'node:crypto';
import { parseHostPort, type HostPort } from '../../protocol/host-port.js';
import { Client } from 'ssh2';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { encodeLeaseRenew, LEASE_RENEW_REQUEST } from '../../protocol/lease-renew.js';
import { parseCertificateLine } from '../../protocol/ssh-cert.js';
import { CLI_SOFTWARE } from '../../protocol/ssh-idents.js';
import { parseKeyLine } from '../../protocol/ssh-key.js';
import { CliError, EXIT, STOPPED } from '../errors.js';
import { enforceChannelLimits, forgetKeyExchangeSecrets, installPooledPadding, installQuietChannelDestroy } from '../../node/ssh2-internals.js';
import { boundUnsentAnswers } from './answer-bound.js';
import { certIdentity, sendGlobalRequest } from './ssh2-cert-auth.js';

export interface RelayTimings {
  /** SSH keepalive: a dead relay is noticed after interval × (countMax + 1). */
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  readyTimeoutMs: number;
}

// A relay that stops answering is noticed within about 20 s (4 × 5 s), inside the 30 s promised.
export const DEFAULT_TIMINGS: RelayTimings = { keepaliveIntervalMs: 5_000, keepaliveCountMax: 3, readyTimeoutMs: 15_000 };

// AES-GCM first: with AES-NI it is the fastest cipher OpenSSH and ssh2 share (DESIGN, performance).
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes256-ctr'];

/** A relay's `host:port` from a lease (protocol/host-port.ts). */
export function splitAddress(address: string): HostPort {
  const hp = parseHostPort(address);
  if (!hp) throw new CliError(EXIT.ERROR, `relay address "${address}" is not host:port`);
  return hp;
}

/** An error ssh2 emits on a Client (`level`: client-socket, client-timeout, protocol ...). */
export type RelayError = Error & { level?: string };

/**
 * Connects to the lease's relay: the host key is pinned from the lease (no trust on first use)
 * and the client authenticates with the lease's certificate and its in-memory key. Every 'error'
 * the client emits once it is connected goes to `onError`.
 *
 * The client has one 'error' listener for its whole life, from before it connects: ssh2 may emit
 * 'error' more than once on one connection, and an 'error' with no listener crashes the process.
 * Seen: a connection reset before the relay's identification line (the relay dropping a socket at
 * its start-up caps with the CLI's line unread) is ECONNRESET, then "Connection lost before
 * handshake"; a DISCONNECT with a reason other than by-application, then the reset socket, is two
 * errors after ready (test/e2e/cli-rogue-relay).
 *
 * `signal` aborted before ready (a stop) ends the attempt at once, with a CliError (exit 130,
 * code STOPPED): a relay that does not answer held a stop for up to its ready timeout (15 s), and
 * with it the revocation of the lease just issued (a second Ctrl-C then left it active).
 */
export function connectRelay(
  issued: LeaseIssued,
  privateKey: KeyObject,
  timings: RelayTimings = DEFAULT_TIMINGS,
  onError: (err: RelayError) => void = () => {},
  signal?: AbortSignal,
): Promise<Client> {
  const { host, port } = splitAddress(issued.relay.address);
  const pinned = parseKeyLine(issued.relay.host_key).blob;
  const cert = parseCertificateLine(issued.certificate);
  // Less CPU per byte, as in the relay: pooled padding randomness, one writev per tick; and no
  // unused error per closed channel.
  installPooledPadding();
  installQuietChannelDestroy();
  if (signal?.aborted) return Promise.reject(new CliError(EXIT.STOPPED, `stopped before connecting to relay ${issued.relay.name}`, { code: STOPPED }));
  return new Promise((resolve, reject) => {
    const client = new Client();
    let hostKeyMismatch = false;
    let state: 'connecting' | 'ready' | 'failed' = 'connecting';
    client.on('error', (err: RelayError) => {
      if (state === 'ready') return onError(err);
      if (state === 'failed') return;
      state = 'failed';
      if (hostKeyMismatch) {
        reject(new CliError(EXIT.UNREACHABLE, `relay ${issued.relay.name} at ${issued.relay.address} presented an unexpected host key; refusing to connect`));
      } else if (err.level === 'client-authentication') {
        reject(new CliError(EXIT.NOT_PERMITTED, `relay ${issued.relay.name} refused the lease certificate`));
      } else {
        reject(new CliError(EXIT.UNREACHABLE, `cannot reach relay ${issued.relay.name} at ${issued.relay.address} (${(err as { code?: string }).code ?? err.message})`));
      }
    });
    const onAbort = () => {
      if (state !== 'connecting') return;
      state = 'failed';
      client.destroy();
      reject(new CliError(EXIT.STOPPED, `stopped while connecting to relay ${issued.relay.name} at ${issued.relay.address}`, { code: STOPPED }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    client.once('ready', () => {
      signal?.removeEventListener('abort', onAbort);
      if (state === 'failed') return;
      state = 'ready';
      resolve(client);
    });
    // A connection that ends after the relay's identification line and before 'ready' with no
    // error: a FIN, no DISCONNECT, as from a relay SIGKILLed mid-handshake (its kernel closes the
    // socket). ssh2 then emits 'end' and 'close' only, and clears its ready timeout: without this
    // the connect never settled (`open --listen` waited in silence for good; `open --stdio` and
    // `expose`, with nothing else keeping Node's event loop alive, exited 13 without a word).
    client.once('close', () => {
      signal?.removeEventListener('abort', onAbort);
      if (state !== 'connecting') return;
      state = 'failed';
      reject(new CliError(EXIT.UNREACHABLE, `cannot reach relay ${issued.relay.name} at ${issued.relay.address} (the connection closed during the SSH handshake)`));
    });
    client.connect({
      host,
      port,
      username: issued.lease.user,
      hostVerifier: (key: Buffer) => {
        hostKeyMismatch = !key.equals(pinned);
        return !hostKeyMismatch;
      },
      authHandler: [{ type: 'publickey', username: issued.lease.user, key: certIdentity(privateKey, cert) }] as never,
      keepaliveInterval: timings.keepaliveIntervalMs,
      keepaliveCountMax: timings.keepaliveCountMax,
      readyTimeout: timings.readyTimeoutMs,
      algorithms: { cipher: CIPHERS as never },
      // Tells the relay this is Tunnel's own CLI: its channels may grow their windows (protocol/ssh-idents.ts).
      ident: CLI_SOFTWARE,
    });
    // A relay that sends past a channel's window (this process would hold all it sends) or
    // announces a channel maximum packet size under 1 KiB (0 made ssh2 spin) ends the
    // connection (node/ssh2-internals.ts), with the reason as its error: a CliError, so a
    // one-connection session (open --stdio) fails with it (LeaseSupervisor).
    enforceChannelLimits(client, (v) => {
      const what = v.kind === 'window_exceeded' ? 'sent channel data beyond the window' : `announced a channel maximum packet size of ${v.packetSize} bytes`;
      client.emit('error', Object.assign(new CliError(EXIT.ERROR, `the relay ${what}; disconnected`), { level: 'protocol' }));
      client.destroy();
    });
    // A relay that makes this side answer (requests wanting a reply, refused channel opens) and
    // does not take the answers is ended the same way, before they pile up (answer-bound.ts).
    boundUnsentAnswers(client, ({ count, bytes }) => {
      const err = new CliError(EXIT.ERROR, `the relay left ${count} answers to its requests unread (${bytes} bytes); disconnected`);
      client.emit('error', Object.assign(err, { level: 'protocol' }));
      client.destroy();
    });
    // No key pair or shared secret kept once each key exchange is over (node/ssh2-internals.ts).
    forgetKeyExchangeSecrets(client);
    // ssh2 leaves Nagle on: a channel-open confirmation or a one-byte reply then waits for the
    // peer's delayed ACK (about 40 ms per hop). Set before the socket connects; net applies it then.
    client.setNoDelay(true);
    // No writev batching here (the relay has it, node/write-batching.ts): for a CLI end it cost
    // CPU rather than saving it, 5-9% in each of four bench:ssh-ends runs at both ends.
  });
}

/** Hands the relay a fresh certificate for the same key (in-band renewal). */
export function renewOnConnection(client: Client, certificateLine: string): Promise<boolean> {
  const blob = parseCertificateLine(certificateLine);
  return sendGlobalRequest(client, LEASE_RENEW_REQUEST, encodeLeaseRenew(blob));
}
