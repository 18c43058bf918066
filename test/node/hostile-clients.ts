/**
 * Hostile SSH clients for the hostile-client suite (and bench:hostile): ssh2 clients that
 * step outside what a well-behaved client does, through ssh2's own protocol object so every
 * packet is well formed. They rely on ssh2 client internals (`_protocol`, `_handlers`, `_sock`,
 * channel `incoming`/`outgoing`); ssh2 is pinned (see node/ssh2-internals.ts). windowOverrun and
 * announceMaxPacket work on a server Connection too (the same Protocol class, the same `_sock`):
 * test/harness/rogue-relay.ts is a hostile relay for the CLI with them.
 */
import type { KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type Connection, type ParsedKey } from 'ssh2';
import { certIdentity } from '../../cli/ssh/ssh2-cert-auth.js';
import { parseKeyLine } from '../../protocol/ssh-key.js';
import { connectWithCertificate, type CertClientOptions } from './ssh2-cert-client.js';

interface ClientProtocol {
  _handlers: Record<string, (...args: unknown[]) => void>;
  authPK(username: string, key: ParsedKey): void;
  authNone(username: string): void;
  ping(): void;
  rekey(): void;
  channelWindowAdjust(id: number, amount: number): void;
  channelData(id: number, data: Buffer): void;
  directTcpip(chan: number, initWindow: number, maxPacket: number, cfg: unknown): void;
  forwardedTcpip(chan: number, initWindow: number, maxPacket: number, cfg: unknown): void;
  channelOpenConfirm(remote: number, local: number, initWindow: number, maxPacket: number): void;
}
/** Either end of an ssh2 connection: a Client, or a server's Connection to one. */
type Peer = Client | Connection;
const protocolOf = (c: Peer) => (c as unknown as { _protocol: ClientProtocol })._protocol;
export const socketOfClient = (c: Peer) => (c as unknown as { _sock: Socket })._sock;

export interface PipelinedAuthResult {
  /** USERAUTH_PK_OK replies received (1 before the second query). */
  pkOk: number;
  /** Resolves when the relay closed the connection. */
  closed: Promise<void>;
}

/**
 * Finding 1 of issue 8: a publickey query (no signature) and a `none` request in one write,
 * then, once the first query is answered, a second publickey query. ssh2's server keeps one
 * queue of pending auth replies; the unanswered `none` shifts it, so accepting the second query
 * throws `"publickey" auth not in progress` inside the relay's async handler. Needs only a
 * certificate, never its private key (`privateKey` only builds ssh2's key object; nothing is signed).
 */
export function pipelinedAuthAttack(o: Omit<CertClientOptions, 'ciphers'>): Promise<PipelinedAuthResult> {
  const client = new Client();
  const hostBlob = parseKeyLine(o.hostKeyLine).blob;
  const key = certIdentity(o.privateKey, o.certificate);
  client.on('error', () => {});
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    let pkOk = 0;
    client.connect({
      host: o.host ?? '127.0.0.1',
      port: o.port,
      username: o.username,
      hostVerifier: (k: Buffer) => k.equals(hostBlob),
      authHandler: () => {}, // never called: SERVICE_ACCEPT is taken over below
      readyTimeout: 30_000,
    });
    const proto = protocolOf(client);
    const sock = socketOfClient(client);
    proto._handlers.SERVICE_ACCEPT = () => {
      sock.cork();
      proto.authPK(o.username, key);
      proto.authNone(o.username);
      process.nextTick(() => sock.uncork());
    };
    proto._handlers.USERAUTH_PK_OK = () => {
      pkOk++;
      if (pkOk === 1) {
        proto.authPK(o.username, key);
        // Whatever happens next (a second PK_OK, a failure or a close), report after it.
        setTimeout(() => resolve({ pkOk, closed }), 1000).unref();
      }
    };
    proto._handlers.USERAUTH_FAILURE = () => {};
    void closed.then(() => (pkOk === 0 ? reject(new Error('connection closed before the first PK_OK')) : resolve({ pkOk, closed })));
  });
}

/** Opens a direct-tcpip channel from an authenticated Y. */
export function openDirect(y: Client, host: string, port: number): Promise<ClientChannel> {
  return new Promise((resolve, reject) => y.forwardOut('127.0.0.1', 40000, host, port, (err, ch) => (err ? reject(err) : resolve(ch))));
}

/** Grants the relay ~4 GiB of window on `ch` (what finding 2's attacker does). */
export function grantHugeWindow(y: Client, ch: ClientChannel): void {
  const c = ch as unknown as { outgoing: { id: number }; incoming: { window: number } };
  const extra = 0xffff_ffff - c.incoming.window;
  protocolOf(y).channelWindowAdjust(c.outgoing.id, extra);
  c.incoming.window += extra;
}

/**
 * Sends `bytes` of CHANNEL_DATA on `ch` whatever the window the peer granted, in packets of
 * 30,000 bytes (not a divisor of the 2 MiB window, so one packet takes the window below 0:
 * ssh2 itself drops a packet only at a window of exactly 0). Waits for its own socket to drain
 * every MiB, so what it sent is about what the peer read. Resolves with the bytes sent, early if
 * the connection closes.
 */
export function windowOverrun(y: Peer, ch: Duplex, bytes: number): Promise<number> {
  const proto = protocolOf(y);
  const id = (ch as unknown as { outgoing: { id: number } }).outgoing.id;
  const sock = socketOfClient(y);
  const chunk = Buffer.alloc(30_000, 0x41);
  let sent = 0;
  return new Promise((resolve) => {
    const go = () => {
      // ssh2 drops what it writes to a socket no longer writable (the peer hung up).
      while (sent < bytes && sock.writable) {
        proto.channelData(id, chunk);
        sent += chunk.length;
        if (sock.writableLength > 1 << 20) return void sock.once('drain', go);
      }
      resolve(sent);
    };
    sock.once('close', () => resolve(sent));
    go();
  });
}

/**
 * Makes `c` announce `maxPacket` as its maximum packet size in every channel it opens
 * (direct-tcpip from a client, forwarded-tcpip from a server) or confirms from now on, instead
 * of ssh2's 32 KiB.
 */
export function announceMaxPacket(c: Peer, maxPacket: number): void {
  const proto = protocolOf(c);
  const direct = proto.directTcpip.bind(proto);
  const forwarded = proto.forwardedTcpip.bind(proto);
  const confirm = proto.channelOpenConfirm.bind(proto);
  proto.directTcpip = (chan, initWindow, _max, cfg) => direct(chan, initWindow, maxPacket, cfg);
  proto.forwardedTcpip = (chan, initWindow, _max, cfg) => forwarded(chan, initWindow, maxPacket, cfg);
  proto.channelOpenConfirm = (remote, local, initWindow) => confirm(remote, local, initWindow, maxPacket);
}

/** Stops reading the client's TCP socket (the kernel buffers fill, then the relay's queues would). */
export function stopReading(c: Client): void {
  socketOfClient(c).pause();
}

/**
 * The peer stops reading at the kernel (not only the stream: Node would still read the relay's
 * DISCONNECT and FIN into its buffer and then refuse to write): it never learns it was cut off
 * and goes on sending.
 */
export function ignoreEverything(c: Client): void {
  const sock = socketOfClient(c);
  sock.pause();
  (sock as unknown as { _handle: { readStop(): void } })._handle.readStop();
}

/**
 * A window-flood Y: authenticates, opens a channel to `exposure`, grants ~4 GiB of window and
 * stops reading its socket. Resolves with the client and a promise of its close.
 */
export async function windowFlood(o: Omit<CertClientOptions, 'ciphers'>, exposure: string, port: number): Promise<{ client: Client; closed: Promise<void> }> {
  const client = await connectWithCertificate(o);
  client.on('error', () => {});
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  const ch = await openDirect(client, exposure, port);
  grantHugeWindow(client, ch);
  stopReading(client);
  return { client, closed };
}

/**
 * Sends `keepalive@openssh.com` global requests with want-reply, without reading any reply,
 * until `count` are sent or the relay stops reading (its socket backs up past `stopAtQueued`
 * bytes in this client's own write queue) or closes. Resolves with how many were sent.
 */
export async function keepaliveFlood(c: Client, count: number, stopAtQueued = 16 << 20): Promise<number> {
  const proto = protocolOf(c);
  const sock = socketOfClient(c);
  stopReading(c);
  let sent = 0;
  while (sent < count && !sock.destroyed) {
    for (let i = 0; i < 2000 && sent < count; i++, sent++) proto.ping();
    if (sock.writableLength > stopAtQueued) break;
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

/**
 * A keepalive flood from a client that never authenticates (anyone who can reach the port):
 * once the key exchange is done it floods instead of authenticating. Resolves with the number
 * of requests sent and a promise of the connection's close.
 */
export function preauthKeepaliveFlood(o: { port: number; hostKeyLine: string; host?: string }, count: number): Promise<{ sent: number; closed: Promise<void> }> {
  const client = new Client();
  const hostBlob = parseKeyLine(o.hostKeyLine).blob;
  client.on('error', () => {});
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  return new Promise((resolve) => {
    client.connect({
      host: o.host ?? '127.0.0.1',
      port: o.port,
      username: 'nobody',
      hostVerifier: (k: Buffer) => k.equals(hostBlob),
      authHandler: () => {},
      readyTimeout: 60_000,
    });
    protocolOf(client)._handlers.SERVICE_ACCEPT = () => {
      void keepaliveFlood(client, count).then((sent) => resolve({ sent, closed }));
    };
  });
}

/**
 * Starts a re-key and never finishes it: sends KEXINIT and stops reading before the relay's
 * KEXINIT can arrive, so ssh2's client never sends its key exchange reply. With `hugeWindow`,
 * that channel's ~4 GiB window goes out in the same write, just before the KEXINIT: the relay
 * reads both at once, so what it sends under the new window meets its re-key, not only a full
 * socket (with the window granted first, the socket queue could reach the bound before the
 * relay read the KEXINIT, and the key exchange queue was never used: a CI run on a loaded machine).
 */
export function stallRekey(c: Client, hugeWindow?: ClientChannel): void {
  stopReading(c);
  const sock = socketOfClient(c);
  sock.cork();
  if (hugeWindow) grantHugeWindow(c, hugeWindow);
  protocolOf(c).rekey();
  sock.uncork();
}

export { connectWithCertificate };
export type { KeyObject };
