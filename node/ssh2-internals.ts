import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { randomPool } from '../shared/random-pool.js';
import type { Duplex } from 'node:stream';
import type * as Ssh2 from 'ssh2';
import type { Client, Connection, ParsedKey } from 'ssh2';
import { SshWriter } from '../protocol/ssh-wire.js';

/**
 * The few ssh2 1.17 internals the relay depends on, in one place so an upgrade has one file
 * to check. Each use is explained where ssh2's public API falls short.
 *
 * An ssh2 upgrade must re-check (each wrapper throws "ssh2 internals changed" at connection
 * time if a name is gone, and test/interop fails if a behaviour changed):
 * - `Connection._protocol._handlers.{GLOBAL_REQUEST, CHANNEL_OPEN, CHANNEL_REQUEST}` keep their
 *   signatures, and lib/server.js still answers a CHANNEL_REQUEST on a plain channel with
 *   CHANNEL_FAILURE even after it sent CHANNEL_CLOSE (if fixed, dropRequestsAfterClose is moot).
 * - `Connection._chanMgr.get(id)` returns the Channel, whose `outgoing.state` goes
 *   open → eof → closing (CLOSE sent) → closed.
 * - `_handlers.{CHANNEL_DATA, CHANNEL_EXTENDED_DATA}` (server and client) are still called with
 *   `(p, recipient, data, ...)` and still accept a packet past the window (if ssh2 now refuses
 *   it, that half of enforceChannelLimits is moot); `_handlers.{CHANNEL_OPEN,
 *   CHANNEL_OPEN_CONFIRMATION}` get an info object with the peer's `packetSize`, and
 *   lib/Channel.js `_write` still slices by it (enforceChannelLimits).
 * - lib/protocol/kex.js calls `protocol._onHandshakeComplete` through the instance property,
 *   and Protocol.js reads `_kex.remoteExtInfoEnabled` inside it to send its own EXT_INFO (still
 *   with the comma missing in `server-sig-algs`?); `_packetRW.write.{allocStart, alloc,
 *   finalize}` and lib/protocol/utils.js `sendPacket` are unchanged.
 * - The `algorithms` names in node/ssh-algorithms.ts are still supported (ssh2 throws at start
 *   if not), the server still appends `kex-strict-s-v00@openssh.com`, group exchange is still
 *   unimplemented on the server side, and the zlib inflater is still unbounded (see COMPRESSION).
 * - `Connection._sock` and `lib/protocol/crypto.js` `bindingAvailable`.
 * - Send-buffer accounting (keyExchangeQueue, node/send-budget.ts): `Protocol._queue` is still
 *   the only place ssh2 holds outbound packets (during a key exchange), server.js `onWrite`
 *   still writes straight to the injected socket, `Channel#_write` still calls back once the
 *   peer's window allows (not once the socket took the bytes), and the server still emits
 *   `handshake` after flushing the queue.
 * - Adaptive windows (channelWindow, node/adaptive-window.ts): lib/Channel.js `MAX_WINDOW` is
 *   still 2 MiB and a Channel's readable high-water mark; a Channel still has `incoming.window`,
 *   `outgoing.{id, state}` and `_client._protocol.channelWindowAdjust(id, n)`; the CHANNEL_DATA
 *   handlers (client.js and server.js) still decrement `incoming.window`, then call
 *   `channel.push(data)`, then top up only when the window is at or below half of MAX_WINDOW;
 *   and `Channel#_read` is still where ssh2 grants window again after backpressure.
 * - Pooled padding (installPooledPadding): lib/protocol/crypto.js still exports CIPHER_INFO, MAC_INFO
 *   and createCipher, its outbound cipher classes are still the six in CIPHER_SHAPES, and each
 *   `allocPacket` still computes the padding as written there (node/ssh2-internals.test.ts
 *   compares every class against ssh2's own).
 * - client.js still keeps the server's identification software version in `Client#_remoteVer`.
 * - node/startup-memory.ts: lib/protocol/crypto/poly1305.js is still only used by the pure-JS
 *   ChaChaPoly*Native classes (chosen only without the binding), `crypto.js` still requires it
 *   inside `init` and awaits the Emscripten factory, and cpu-features is still only read by
 *   lib/protocol/constants.js to order the default cipher list.
 * - Host key: lib/protocol/kex.js still signs the exchange hash with `hostKey.sign(data, algo)`
 *   on the object `utils.parseKey` returned, and server.js takes an already parsed key as is
 *   (`parseKey` returns a parsed key unchanged); see hostKeyWithKeyObject.
 * - Auth: server.js still keeps one `_authsQueue` for pipelined USERAUTH_REQUESTs, and
 *   `PKAuthContext#accept` still throws when it is out of step (test/node/hostile-auth shows
 *   the relay closes that connection instead of crashing).
 */

const require = createRequire(import.meta.url);

/**
 * ssh2's Server and key parser, required from their own files: the relay uses nothing else of
 * ssh2's entry point (lib/index.js), which also loads its Client, agent, HTTP agents and key
 * generator, about 0.4 MB of an idle relay's RSS (issue 11, bench:footprint under load), mostly
 * their source and compiled code. `ssh2.utils.parseKey` is this same function.
 * test/node/relay-startup-memory.test.ts checks that tunnel-node does not load lib/index.js.
 */
export const Ssh2Server = require('ssh2/lib/server.js') as typeof Ssh2.Server;
const { parseKey } = require('ssh2/lib/protocol/keyParser.js') as { parseKey: typeof Ssh2.utils.parseKey };

/** Whether ssh2's native crypto binding loaded (it silently falls back to pure JS). */
export function nativeCryptoAvailable(): boolean {
  try {
    return (require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable === true;
  } catch {
    return false;
  }
}

type GlobalRequestHandler = (p: unknown, name: string, wantReply: boolean, data: unknown) => void;
type ChannelOpenHandler = (p: unknown, info: { type: string; sender: number; packetSize?: number }) => void;
type ChannelOpenConfirmationHandler = (p: unknown, info: { recipient: number; packetSize?: number }) => void;
type ChannelRequestHandler = (p: unknown, recipient: number, type: string, wantReply: boolean, data: unknown) => void;
type ChannelDataHandler = (p: unknown, recipient: number, data: Buffer, ...rest: unknown[]) => void;
interface PacketWriterInternals {
  allocStart: number;
  alloc(size: number): Buffer;
  finalize(packet: Buffer): Buffer;
}
interface ProtocolInternals {
  _handlers: {
    GLOBAL_REQUEST?: GlobalRequestHandler;
    CHANNEL_OPEN?: ChannelOpenHandler;
    CHANNEL_OPEN_CONFIRMATION?: ChannelOpenConfirmationHandler;
    CHANNEL_REQUEST?: ChannelRequestHandler;
    CHANNEL_DATA?: ChannelDataHandler;
    CHANNEL_EXTENDED_DATA?: ChannelDataHandler;
  };
  _onHandshakeComplete?: (...args: unknown[]) => void;
  _kex?: { remoteExtInfoEnabled?: boolean };
  _packetRW?: { write: PacketWriterInternals };
  /** Outbound packets held back during a key exchange (utils.js sendPacket); undefined otherwise. */
  _queue?: Uint8Array[];
}

function protocolOf(conn: Connection): ProtocolInternals {
  const proto = (conn as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto?._handlers) throw new Error('ssh2 internals changed: Connection._protocol._handlers missing');
  return proto;
}

/** Marks a custom global request re-dispatched through ssh2's own request path. */
export const CUSTOM_REQUEST = Symbol('tunnel.customGlobalRequest');
export interface CustomRequestData {
  [CUSTOM_REQUEST]: { name: string; payload: Buffer };
}
/** The custom request carried by a `request` event's data, if it is one. */
export function customRequestOf(data: unknown): { name: string; payload: Buffer } | undefined {
  return typeof data === 'object' && data !== null && CUSTOM_REQUEST in data ? (data as CustomRequestData)[CUSTOM_REQUEST] : undefined;
}

/**
 * ssh2's server answers every global request it does not know (like `lease-renew@tunnel`)
 * with FAILURE and never emits it. Replies to global requests must go out in request order
 * (RFC 4254 §4), and ssh2 keeps that order in a private queue that only its `request` event
 * path feeds. So a request named in `names` is re-dispatched under the name of a request ssh2
 * does emit (`cancel-streamlocal-forward@openssh.com`), with data tagged by CUSTOM_REQUEST;
 * the `request` listener recognises the tag and gets ordered `accept`/`reject`.
 */
export function routeCustomGlobalRequests(conn: Connection, names: readonly string[]): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.GLOBAL_REQUEST;
  if (!orig) throw new Error('ssh2 internals changed: GLOBAL_REQUEST handler missing');
  proto._handlers.GLOBAL_REQUEST = (p, name, wantReply, data) => {
    if (names.includes(name) && Buffer.isBuffer(data)) {
      const tagged: CustomRequestData = { [CUSTOM_REQUEST]: { name, payload: data } };
      orig(p, 'cancel-streamlocal-forward@openssh.com', wantReply, tagged);
      return;
    }
    orig(p, name, wantReply, data);
  };
}

/**
 * Lets the relay see channel opens that ssh2 rejects on its own (session, x11,
 * direct-streamlocal, unknown types) so they are logged and counted. ssh2 still decides.
 */
export function observeChannelOpens(conn: Connection, observe: (type: string) => void): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.CHANNEL_OPEN;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_OPEN handler missing');
  proto._handlers.CHANNEL_OPEN = (p, info) => {
    observe(info.type);
    orig(p, info);
  };
}

/** The TCP socket under an ssh2 server connection (ssh2 keeps it as `_sock`). */
export function socketOf(conn: Connection): Socket {
  const sock = (conn as unknown as { _sock?: Socket })._sock;
  if (!sock) throw new Error('ssh2 internals changed: Connection._sock missing');
  return sock;
}

/** SSH_MSG_EXT_INFO (RFC 8308). */
const MSG_EXT_INFO = 7;

/**
 * ssh2 1.17 sends `server-sig-algs` malformed: its Protocol.js joins two string literals
 * without a comma (`...ecdsa-sha2-nistp521rsa-sha2-512...`), and it lists algorithms the relay
 * never accepts. This sends a correct EXT_INFO instead of ssh2's, with `algs`, at the place ssh2
 * would have sent its own: after the first NEWKEYS, before anything else is emitted, and only
 * when the client announced `ext-info-c`. Call it from the server's `connection` event (the
 * client's identification line has arrived; the key exchange has not finished).
 */
export function sendServerSigAlgs(conn: Connection, algs: readonly string[]): void {
  const proto = protocolOf(conn);
  const orig = proto._onHandshakeComplete;
  if (typeof orig !== 'function') throw new Error('ssh2 internals changed: Protocol._onHandshakeComplete missing');
  let first = true;
  proto._onHandshakeComplete = (...args: unknown[]) => {
    if (first) {
      first = false;
      const kex = proto._kex;
      if (kex?.remoteExtInfoEnabled === true) {
        // ssh2 checks this flag right after this call to decide whether to send its own.
        kex.remoteExtInfoEnabled = false;
        // ssh2 sends EXT_INFO after draining its queue and before emitting 'handshake'.
        conn.prependOnceListener('handshake', () => sendExtInfo(proto, algs));
      }
    }
    orig(...args);
  };
}

function sendExtInfo(proto: ProtocolInternals, algs: readonly string[]): void {
  const write = proto._packetRW?.write;
  if (!write) throw new Error('ssh2 internals changed: Protocol._packetRW.write missing');
  const payload = new SshWriter().uint8(MSG_EXT_INFO).uint32(1).string('server-sig-algs').string(algs.join(',')).toBuffer();
  const packet = write.alloc(payload.length);
  payload.copy(packet, write.allocStart);
  sendPacket(proto, write.finalize(packet));
}

/** ssh2's own packet sender: encrypts, or queues while a re-key is in progress. */
function sendPacket(proto: ProtocolInternals, packet: Buffer): void {
  const utils = require('ssh2/lib/protocol/utils.js') as { sendPacket?: (proto: unknown, packet: Buffer) => void };
  if (typeof utils.sendPacket !== 'function') throw new Error('ssh2 internals changed: protocol/utils.js sendPacket missing');
  utils.sendPacket(proto, packet);
}

interface ChannelInternals {
  outgoing?: { state?: string };
}

/**
 * Drops channel requests that arrive for a channel the relay has already closed (sent
 * CHANNEL_CLOSE). ssh2 answers such a request with CHANNEL_FAILURE; a client that has meanwhile
 * received the close and freed the channel then gets a reply for a channel it no longer knows.
 * PuTTY treats that as fatal ("Received SSH2_MSG_CHANNEL_FAILURE for nonexistent channel") and
 * drops the whole connection; it sends `winadj@putty.projects.tartarus.org` with want-reply
 * during every bulk transfer. OpenSSH's sshd sends nothing more on a channel once it has sent
 * CHANNEL_CLOSE (RFC 4254 §5.3), and neither does the relay now.
 */
export function dropRequestsAfterClose(conn: Connection): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.CHANNEL_REQUEST;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_REQUEST handler missing');
  const chanMgr = (conn as unknown as { _chanMgr?: { get(id: number): unknown } })._chanMgr;
  if (typeof chanMgr?.get !== 'function') throw new Error('ssh2 internals changed: Connection._chanMgr missing');
  proto._handlers.CHANNEL_REQUEST = (p, recipient, type, wantReply, data) => {
    const channel = chanMgr.get(recipient) as ChannelInternals | undefined;
    const state = typeof channel === 'object' && channel !== null ? channel.outgoing?.state : undefined;
    if (state === 'closing' || state === 'closed') return;
    orig(p, recipient, type, wantReply, data);
  };
}

/** The smallest maximum packet size a peer may announce for a channel (see enforceChannelLimits). */
export const MIN_CHANNEL_PACKET = 1024;

/**
 * How a peer broke a channel limit (enforceChannelLimits), `kind` named as the relay's close
 * reason (node/close-reasons.ts): data of `bytes` on `channel` (this side's id) whose window left
 * was `window`, or a channel open (`type`) or confirmation announcing `packetSize` under `min`.
 */
export type ChannelLimitViolation =
  | { kind: 'window_exceeded'; channel: number; window: number; bytes: number }
  | { kind: 'packet_size_too_small'; packetSize: number; min: number; type: string };

/**
 * Refuses a peer that breaks one of two channel limits; `onViolation` is called once, for the
 * first (it closes the connection), and nothing more is handed to ssh2 on any channel of the
 * connection. Works for a server Connection and a connected Client (ssh2 creates the Client's
 * protocol in `connect()`).
 *
 * - Channel data beyond the window this side granted (`window_exceeded`). ssh2 (server.js and
 *   client.js CHANNEL_DATA, client.js CHANNEL_EXTENDED_DATA) drops a packet only when the window
 *   is exactly 0; a packet larger than what is left takes `incoming.window` below 0, and from
 *   then on every packet is pushed into the channel's readable side whether or not anyone reads
 *   it: a peer that sends one odd-sized packet past the window, on a channel whose reader is
 *   paused (the relay's bridge pauses Y's channel while X is slow), made the relay hold
 *   everything it sent (256 MiB in test/node/hostile-memory). RFC 4254 5.2: the sender may not
 *   send more than the window. OpenSSH disconnects a peer that ignores the window too. So a
 *   packet longer than the window left is not handed to ssh2.
 * - A maximum packet size below MIN_CHANNEL_PACKET in a CHANNEL_OPEN or a
 *   CHANNEL_OPEN_CONFIRMATION (`packet_size_too_small`). ssh2 writes a channel's data in slices
 *   of at most that size (lib/Channel.js `_write`) and takes any value: with 0 its loop never
 *   advances and the process spins forever (one direct-tcpip open from any member stopped the
 *   relay, even its /metrics), and with 1 every byte becomes a packet of its own (the relay
 *   spent about 6 CPU seconds per MB and blocked for seconds at a time; test/node/hostile-limits).
 *   OpenSSH, PuTTY, paramiko, Go and ssh2 announce 16 KiB or more (paramiko never less than
 *   4 KiB). The open or confirmation is not handed to ssh2.
 */
export function enforceChannelLimits(conn: Connection | Client, onViolation: (v: ChannelLimitViolation) => void): void {
  const proto = protocolOf(conn as Connection);
  const chanMgr = (conn as unknown as { _chanMgr?: { get(id: number): unknown } })._chanMgr;
  if (typeof chanMgr?.get !== 'function') throw new Error('ssh2 internals changed: Connection._chanMgr missing');
  const open = proto._handlers.CHANNEL_OPEN;
  const confirm = proto._handlers.CHANNEL_OPEN_CONFIRMATION;
  if (!open || !confirm) throw new Error('ssh2 internals changed: CHANNEL_OPEN or CHANNEL_OPEN_CONFIRMATION handler missing');
  let violated = false;
  const violation = (v: ChannelLimitViolation): void => {
    violated = true;
    onViolation(v);
  };
  const windowed = (name: 'CHANNEL_DATA' | 'CHANNEL_EXTENDED_DATA'): void => {
    const orig = proto._handlers[name];
    if (!orig) throw new Error(`ssh2 internals changed: ${name} handler missing`);
    proto._handlers[name] = (p, recipient, data, ...rest) => {
      if (violated) return;
      // A server Session wraps its channel (server.js: `channel._channel`); the relay refuses sessions.
      const entry = chanMgr.get(recipient) as { incoming?: { window?: unknown }; _channel?: { incoming?: { window?: unknown } } } | undefined;
      const window = entry?.incoming?.window ?? entry?._channel?.incoming?.window;
      if (typeof window === 'number' && Buffer.isBuffer(data) && data.length > window) {
        return violation({ kind: 'window_exceeded', channel: recipient, window, bytes: data.length });
      }
      orig(p, recipient, data, ...rest);
    };
  };
  windowed('CHANNEL_DATA');
  windowed('CHANNEL_EXTENDED_DATA');
  const tooSmall = (packetSize: unknown, type: string): boolean => {
    if (violated) return true;
    if (typeof packetSize !== 'number' || packetSize >= MIN_CHANNEL_PACKET) return false;
    violation({ kind: 'packet_size_too_small', packetSize, min: MIN_CHANNEL_PACKET, type });
    return true;
  };
  proto._handlers.CHANNEL_OPEN = (p, info) => {
    if (!tooSmall(info.packetSize, info.type)) open(p, info);
  };
  proto._handlers.CHANNEL_OPEN_CONFIRMATION = (p, info) => {
    if (!tooSmall(info.packetSize, 'confirmation')) confirm(p, info);
  };
}

/**
 * Bytes ssh2 holds for the peer outside the socket. ssh2 writes every packet straight to the
 * socket (server.js `onWrite`: `socket.write(data)`, return value ignored) except during a key
 * exchange: from the moment either side sent KEXINIT until NEWKEYS, `sendPacket`
 * (protocol/utils.js) appends each packet to `Protocol#_queue`, and `_onHandshakeComplete`
 * flushes the queue to the socket and sets it back to undefined. A peer that starts a re-key
 * and never finishes it makes this queue grow without bound. Channel writes add no other
 * buffer: `Channel#_write` (lib/Channel.js) calls back as soon as the peer's window allows.
 *
 * An ssh2 upgrade must re-check: that `_queue` is still the only outbound holding place (and
 * still an array of packets), that `onWrite` still writes to the socket given to
 * `injectSocket`, and that the server still emits `handshake` after flushing the queue.
 *
 * Returns a reader that sums the queue incrementally (the same array only ever grows), so a
 * flood of small queued packets costs O(new packets) per call.
 */
export function keyExchangeQueue(conn: Connection): () => number {
  const proto = protocolOf(conn);
  let seen: Uint8Array[] | undefined;
  let counted = 0;
  let bytes = 0;
  return () => {
    const q = proto._queue;
    if (!q) {
      seen = undefined;
      return 0;
    }
    if (q !== seen || q.length < counted) {
      seen = q;
      counted = 0;
      bytes = 0;
    }
    for (; counted < q.length; counted++) bytes += q[counted]?.length ?? 0;
    return bytes;
  };
}

/** SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 5.1). */
export const OPEN_FAILURE = { ADMINISTRATIVELY_PROHIBITED: 1, CONNECT_FAILED: 2, UNKNOWN_CHANNEL_TYPE: 3, RESOURCE_SHORTAGE: 4 } as const;

/**
 * Refuses a channel open with a reason code and description of our choosing. ssh2's `reject()`
 * always sends its own code and an empty description (clients print "connect failed: "); it
 * calls `_protocol.channelOpenFail(sender, code, '')` synchronously, so this swaps in ours
 * for exactly that one call.
 */
export function rejectChannelOpen(conn: Connection, reject: () => void, code: number, description: string): void {
  const proto = (conn as unknown as { _protocol?: { channelOpenFail?: (remote: number, reason: number, desc: string) => void } })._protocol;
  const orig = proto?.channelOpenFail;
  if (!proto || typeof orig !== 'function') return reject();
  proto.channelOpenFail = (remote: number) => orig.call(proto, remote, code, description);
  try {
    reject();
  } finally {
    delete (proto as { channelOpenFail?: unknown }).channelOpenFail; // back to the prototype's method
    if (proto.channelOpenFail !== orig) proto.channelOpenFail = orig;
  }
}

/** SSH_MSG_DISCONNECT reason codes used by the relay (RFC 4253 11.1). */
export const DISCONNECT = { PROTOCOL_ERROR: 2, BY_APPLICATION: 11, NO_MORE_AUTH_METHODS_AVAILABLE: 14 } as const;

interface PacketWriter {
  allocStartKEX: number;
  alloc(len: number, force?: boolean): Buffer;
  finalize(packet: Buffer, force?: boolean): Buffer;
}

/**
 * Sends SSH_MSG_DISCONNECT with a description and ends the socket. ssh2's `Connection.end()`
 * always sends an empty description, so a client cut for revocation or expiry would not learn
 * why. The packet is built the way ssh2's own `Protocol.disconnect()` builds it (a KEX-safe
 * allocation, sent even mid key exchange). Falls back to `end()` if the internals changed.
 */
export function disconnectWithReason(conn: Connection, code: number, description: string): void {
  const proto = (conn as unknown as { _protocol?: { _packetRW?: { write?: PacketWriter } } })._protocol;
  const w = proto?._packetRW?.write;
  const sock = socketOf(conn);
  let sendPacket: ((proto: unknown, packet: Buffer, bypass: boolean) => void) | undefined;
  try {
    sendPacket = (require('ssh2/lib/protocol/utils.js') as { sendPacket?: typeof sendPacket }).sendPacket;
  } catch {
    sendPacket = undefined;
  }
  if (!w || typeof w.alloc !== 'function' || typeof sendPacket !== 'function' || !sock.writable) {
    conn.end();
    return;
  }
  const desc = Buffer.from(description.slice(0, 256), 'utf8');
  let p = w.allocStartKEX;
  const packet = w.alloc(1 + 4 + 4 + desc.length + 4, true);
  packet[p] = 1; // SSH_MSG_DISCONNECT
  packet.writeUInt32BE(code, ++p);
  packet.writeUInt32BE(desc.length, (p += 4));
  desc.copy(packet, (p += 4));
  packet.writeUInt32BE(0, p + desc.length); // empty language tag
  sendPacket(proto, w.finalize(packet, true), true);
  sock.end();
}

/** ssh2's standard channel window (lib/Channel.js MAX_WINDOW), also its readable high-water mark. */
export const STANDARD_WINDOW = 2 * 1024 * 1024;

/** What node/adaptive-window.ts needs of one ssh2 channel's receive window. */
export interface ChannelWindow {
  /** Bytes the peer may still send (granted, not yet received). */
  window(): number;
  /** Bytes received and not yet consumed. */
  readable(): number;
  /** Grants the peer `n` more bytes (SSH_MSG_CHANNEL_WINDOW_ADJUST). */
  grant(n: number): void;
  /**
   * Calls `received(n, accepted)` after each CHANNEL_DATA of `n` bytes was pushed (the window
   * already reduced; `accepted` false when the readable side is full), and `drained()` after
   * ssh2's own `_read` (the reader wants more after backpressure).
   */
  hook(h: { received(n: number, accepted: boolean): void; drained(): void }): void;
}

interface WindowedChannel {
  incoming?: { window?: number };
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { channelWindowAdjust?: (id: number, n: number) => void } };
  push: (chunk: unknown, encoding?: BufferEncoding) => boolean;
  _read: (n: number) => void;
  readableLength: number;
}

/**
 * The receive window of an ssh2 channel (server or client side). ssh2 grants a fixed 2 MiB
 * window (lib/Channel.js MAX_WINDOW) and offers no way to change it; growing it means sending
 * extra CHANNEL_WINDOW_ADJUSTs and keeping `incoming.window` in step, which is what ssh2's own
 * `windowAdjust` does. ssh2 then never adjusts on its own while the window stays above 1 MiB.
 */
export function channelWindow(ch: Duplex): ChannelWindow {
  const c = ch as unknown as WindowedChannel;
  const adjust = c._client?._protocol?.channelWindowAdjust;
  if (typeof c.incoming?.window !== 'number' || typeof c.outgoing?.id !== 'number' || typeof adjust !== 'function' || typeof c._read !== 'function') {
    throw new Error('ssh2 internals changed: Channel.incoming.window, outgoing.id or _client._protocol.channelWindowAdjust missing');
  }
  const incoming = c.incoming as { window: number };
  const outgoing = c.outgoing as { id: number; state?: string };
  const protocol = c._client!._protocol!;
  return {
    window: () => incoming.window,
    readable: () => c.readableLength,
    grant(n) {
      if (outgoing.state === 'closed' || n <= 0) return;
      incoming.window += n;
      protocol.channelWindowAdjust!(outgoing.id, n);
    },
    hook(h) {
      const push = c.push;
      const read = c._read;
      c.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
        const accepted = push.call(this, chunk, encoding);
        if (chunk instanceof Uint8Array) h.received(chunk.length, accepted);
        return accepted;
      };
      c._read = function (n: number): void {
        read.call(this, n);
        h.drained();
      };
    },
  };
}

/** The software version in the server's identification line, as ssh2's client keeps it (`_remoteVer`). */
export function remoteSoftware(client: Client): string | undefined {
  const v = (client as unknown as { _remoteVer?: unknown })._remoteVer;
  return typeof v === 'string' ? v : undefined;
}

/**
 * The ed25519 host key, parsed once, whose `sign` uses a node:crypto KeyObject. ssh2's own
 * `sign` hands its PKCS#8 PEM text to `crypto.sign` on every key exchange, which makes OpenSSL 3
 * decode the key each time: about 1.2 ms against 0.12 ms with a KeyObject on this machine, a
 * fifth of the relay's CPU per new connection (issue 11, setup rate). The signature is the same
 * (Ed25519 is deterministic). Other key types are returned as ssh2 parsed them.
 */
export function hostKeyWithKeyObject(pem: string): ParsedKey {
  const result = parseKey(pem) as ParsedKey | ParsedKey[] | Error;
  if (result instanceof Error) throw result;
  const parsed = Array.isArray(result) ? result[0] : result; // OpenSSH files hold one key
  if (!parsed) throw new Error('host key file holds no key');
  if (parsed.type !== 'ssh-ed25519') return parsed;
  const privateKey = createPrivateKey(parsed.getPrivatePEM());
  // ssh2's contract: return the signature, or an Error (never throw).
  (parsed as { sign: (data: Buffer, algo?: string) => Buffer | Error }).sign = (data) => {
    try {
      return cryptoSign(null, data, privateKey);
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  };
  return parsed;
}

/** CSPRNG bytes that packet padding is taken from (shared/random-pool.ts). */
const paddingBytes = randomPool(64 * 1024);
function fillPadding(packet: Buffer, offset: number, len: number): void {
  paddingBytes(len).copy(packet, offset);
}

interface OutboundCipher {
  allocPacket(payloadLen: number): Buffer;
  free(): void;
  _encBlockLen?: number;
  _aadLen?: number;
  _macLen?: number;
}
type AllocPacket = (this: OutboundCipher, payloadLen: number) => Buffer;

/**
 * ssh2's `allocPacket` as lib/protocol/crypto.js writes it for every cipher class, with the
 * random padding taken from a pool: `block` the cipher's block length, `aad` 4 when the length
 * field is not encrypted (AEAD, encrypt-then-MAC), `extra` the room left after the packet for
 * the tag or MAC that the native binding writes in place.
 */
function pooledAllocPacket(shape: (c: OutboundCipher) => { block: number; aad: number; extra: number }): AllocPacket {
  return function (this: OutboundCipher, payloadLen: number): Buffer {
    const { block, aad, extra } = shape(this);
    let pktLen = 4 + 1 + payloadLen;
    let padLen = block - ((pktLen - aad) & (block - 1));
    if (padLen < 4) padLen += block;
    pktLen += padLen;
    const packet = Buffer.allocUnsafe(pktLen + extra);
    packet.writeUInt32BE(pktLen - 4, 0);
    packet[4] = padLen;
    fillPadding(packet, 5 + payloadLen, padLen);
    return packet;
  };
}

/** Each ssh2 outbound cipher class (by constructor name) and the shape of its packets. */
const CIPHER_SHAPES: Record<string, (c: OutboundCipher) => { block: number; aad: number; extra: number }> = {
  AESGCMCipherBinding: () => ({ block: 16, aad: 4, extra: 16 }),
  AESGCMCipherNative: () => ({ block: 16, aad: 4, extra: 0 }),
  ChaChaPolyCipherBinding: () => ({ block: 8, aad: 4, extra: 16 }),
  ChaChaPolyCipherNative: () => ({ block: 8, aad: 4, extra: 0 }),
  GenericCipherBinding: (c) => ({ block: c._encBlockLen ?? NaN, aad: c._aadLen ?? NaN, extra: c._macLen ?? NaN }),
  GenericCipherNative: (c) => ({ block: c._encBlockLen ?? NaN, aad: c._aadLen ?? NaN, extra: 0 }),
};

interface CryptoModule {
  CIPHER_INFO?: Record<string, { keyLen: number; ivLen: number }>;
  MAC_INFO?: Record<string, { len: number }>;
  createCipher?: (config: unknown) => OutboundCipher;
}

/** One instance of every outbound cipher class ssh2 can create here (binding and pure JS), made with throwaway keys. */
export function sampleCiphers(): OutboundCipher[] {
  const crypto = require('ssh2/lib/protocol/crypto.js') as CryptoModule;
  const { CIPHER_INFO, MAC_INFO, createCipher } = crypto;
  if (!CIPHER_INFO || !MAC_INFO || typeof createCipher !== 'function') throw new Error('ssh2 internals changed: protocol/crypto.js CIPHER_INFO, MAC_INFO or createCipher missing');
  const out: OutboundCipher[] = [];
  for (const name of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr']) {
    const info = CIPHER_INFO[name];
    const mac = MAC_INFO['hmac-sha2-256-etm@openssh.com'];
    if (!info || !mac) throw new Error(`ssh2 internals changed: no CIPHER_INFO for ${name}`);
    for (const forceNative of [false, true]) {
      out.push(
        createCipher({
          outbound: {
            onWrite: () => {},
            cipherInfo: info,
            cipherKey: Buffer.alloc(info.keyLen),
            cipherIV: Buffer.alloc(info.ivLen),
            seqno: 0,
            macInfo: mac,
            macKey: Buffer.alloc(mac.len),
            forceNative,
          },
        }),
      );
    }
  }
  return out;
}

let paddingInstalled = false;
/** ssh2's own allocPacket of each cipher class, before installPooledPadding replaced it (for tests). */
export const ORIGINAL_ALLOC_PACKET = new Map<string, AllocPacket>();

/**
 * ssh2 fills each packet's 4 to 19 bytes of random padding with its own `randomFillSync` call
 * (lib/protocol/crypto.js, every cipher class's `allocPacket`): one call into OpenSSL per packet,
 * about 5% of the relay's CPU while it moves data. This replaces `allocPacket` on the prototype
 * of each outbound cipher class with the same arithmetic, taking the padding from a pool of
 * CSPRNG bytes refilled 64 KiB at a time. Packets are byte-for-byte the same shape, the padding
 * still random (RFC 4253 6), for every peer. Idempotent; throws "ssh2 internals changed" if a
 * class is not one it knows.
 */
export function installPooledPadding(): void {
  if (paddingInstalled) return;
  const samples = sampleCiphers();
  for (const c of samples) {
    const proto = Object.getPrototypeOf(c) as { constructor: { name: string }; allocPacket: AllocPacket };
    const name = proto.constructor.name;
    const shape = CIPHER_SHAPES[name];
    if (!shape || typeof proto.allocPacket !== 'function') throw new Error(`ssh2 internals changed: unknown cipher class ${name}`);
    if (!ORIGINAL_ALLOC_PACKET.has(name)) {
      ORIGINAL_ALLOC_PACKET.set(name, proto.allocPacket);
      proto.allocPacket = pooledAllocPacket(shape);
    }
    c.free();
  }
  paddingInstalled = true;
}

/**
 * The socket under an ssh2 channel's connection (lib/Channel.js keeps the Client or server
 * Connection as `_client`, which keeps its socket as `_sock`); undefined for any other stream.
 */
export function channelSocket(ch: Duplex): Socket | undefined {
  const sock = (ch as unknown as { _client?: { _sock?: Socket } })._client?._sock;
  return sock && typeof sock.write === 'function' && typeof sock.writableLength === 'number' ? sock : undefined;
}

/** The TCP socket an ssh2 Client created in `connect()` (ssh2 keeps it as `_sock`). */
export function clientSocket(client: Client): Socket {
  const sock = (client as unknown as { _sock?: Socket })._sock;
  if (!sock || typeof sock.write !== 'function') throw new Error('ssh2 internals changed: Client._sock missing');
  return sock;
}
