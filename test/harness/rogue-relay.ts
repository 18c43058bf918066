/**
 * A rogue relay, for end-to-end tests of the CLI's channel-limit checks (enforceChannelLimits in
 * node/ssh2-internals.ts, wired in cli/ssh/relay-connection.ts) through the real `tunnel expose`
 * and `tunnel open` processes. It is an ssh2 server in the test process that the Stack's real
 * control plane knows as an enrolled relay node (its own host key and address; the fixture sends
 * its heartbeats), so a lease for an exposure pinned to it (`tunnel exposures create --node`)
 * sends the CLI here. It accepts any client key and any forward, and breaks one channel limit on
 * every channel, with ssh2's own protocol object (test/node/hostile-clients.ts):
 * - `tiny-packet`: announces a maximum packet size of 0 in the forwarded-tcpip channel it opens
 *   to X after each tcpip-forward, and in its confirmation of each of Y's direct-tcpip opens;
 * - `overrun`: on the same channels, sends `overrunBytes` of channel data whatever the window X
 *   or Y granted (windowOverrun), and reports what it had sent when the connection closed;
 * - `drop`: sends `DROP_GREETING` on the channel, then ends the whole connection, as a relay that
 *   crashes, restarts or cuts a connection mid-session (its channels close without a word);
 * - `disconnect-reset`: sends `DROP_GREETING` on the channel, then SSH_MSG_DISCONNECT with reason
 *   PROTOCOL_ERROR, and resets the TCP connection once the CLI has ended its side (ssh2 emits two
 *   'error's on the CLI's client: the DISCONNECT, then ECONNRESET);
 * - `reset-before-banner`: reads the CLI's identification line and resets the TCP connection
 *   before sending its own, as the relay does when it drops a socket at its start-up caps with the
 *   CLI's line unread (ssh2 emits two 'error's: ECONNRESET, then "Connection lost before handshake").
 * - `end-in-handshake`: takes the key exchange, then ends the TCP connection (a FIN, no
 *   SSH_MSG_DISCONNECT) at the CLI's first authentication request, unanswered: what the CLI sees
 *   of a relay SIGKILLed mid-handshake, whose kernel closes the socket it had read all of
 *   (ssh2 emits 'end' and 'close' on the CLI's client, and no 'error').
 * - `open-flood`: after each tcpip-forward, opens `FLOOD_OPENS` forwarded-tcpip channels to X at
 *   once and keeps those X accepts open; `flood` reports how many X accepted and refused.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, { type Connection, type TcpipBindInfo } from 'ssh2';
import { formatPublicKeyLine, formatOpenSshPrivateKey, rawPublicKey } from '../../protocol/ssh-key.js';
import { DISCONNECT } from '../../node/ssh2-internals.js';
import { announceMaxPacket, socketOfClient, windowOverrun } from '../node/hostile-clients.js';
import { enrollOnlineNode, expectStatus, nodeHeartbeat, type EnrolledNode } from './control.js';
import type { Stack } from './stack.js';

export type RogueBehaviour = 'tiny-packet' | 'overrun' | 'drop' | 'disconnect-reset' | 'reset-before-banner' | 'end-in-handshake' | 'open-flood';

/** Channels an `open-flood` relay opens to X after each tcpip-forward. */
export const FLOOD_OPENS = 12;

export interface RogueRelay {
  /** Its node name (for `--node`). */
  name: string;
  node: EnrolledNode;
  /**
   * Takes an expose lease for `exposure` (pinned here) as the admin and reports holding it at
   * `port` in its heartbeats, so `tunnel open` is sent here without a `tunnel expose`.
   */
  hold(exposure: string, port: number): Promise<void>;
  /** With `overrun`: the bytes the first overrun had sent when its connection closed. */
  overrun: Promise<number>;
  /** With `open-flood`: how many of the first flood's opens X accepted and refused. */
  flood: Promise<{ accepted: number; refused: number }>;
  stop(): Promise<void>;
}

/** What a `drop` relay sends on a channel before it ends the connection. */
export const DROP_GREETING = 'hello before the drop\n';

const HEARTBEAT_MS = 5_000; // the control plane's online window is 30 s

export async function startRogueRelay(stack: Stack, name: string, behaviour: RogueBehaviour, overrunBytes = 256 << 20): Promise<RogueRelay> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  let overrunDone!: (sent: number) => void;
  const overrun = new Promise<number>((r) => (overrunDone = r));
  let floodDone!: (o: { accepted: number; refused: number }) => void;
  const flood = new Promise<{ accepted: number; refused: number }>((r) => (floodDone = r));
  const misbehave = (conn: Connection, ch: Duplex) => {
    ch.on('error', () => {});
    if (behaviour === 'overrun') void windowOverrun(conn, ch, overrunBytes).then(overrunDone);
    if (behaviour === 'drop') ch.write(DROP_GREETING, () => conn.end());
    if (behaviour === 'disconnect-reset') {
      ch.write(DROP_GREETING, () => {
        const sock = socketOfClient(conn);
        sock.prependOnceListener('end', () => sock.resetAndDestroy());
        (conn as unknown as { _protocol: { disconnect(reason: number): void } })._protocol.disconnect(DISCONNECT.PROTOCOL_ERROR);
      });
    }
  };
  const conns = new Set<Connection>();
  const server = new ssh2.Server({ hostKeys: [formatOpenSshPrivateKey(privateKey)] }, (conn) => {
    conns.add(conn);
    conn.once('close', () => conns.delete(conn));
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => (behaviour === 'end-in-handshake' ? socketOfClient(conn).end() : ctx.accept()));
    conn.on('ready', () => {
      if (behaviour === 'tiny-packet') announceMaxPacket(conn, 0);
    });
    conn.on('request', (accept, reject, reqName, info) => {
      if (reqName !== 'tcpip-forward') return reject?.();
      const bind = info as TcpipBindInfo;
      accept?.(bind.bindPort);
      if (behaviour === 'open-flood') {
        const tally = { accepted: 0, refused: 0 };
        for (let i = 0; i < FLOOD_OPENS; i++) {
          conn.forwardOut(bind.bindAddr, bind.bindPort, '127.0.0.1', 40000 + i, (err, ch) => {
            if (err) tally.refused++;
            else {
              tally.accepted++;
              ch.on('error', () => {});
              ch.resume();
            }
            if (tally.accepted + tally.refused === FLOOD_OPENS) floodDone(tally);
          });
        }
        return;
      }
      conn.forwardOut(bind.bindAddr, bind.bindPort, '127.0.0.1', 40000, (err, ch) => {
        if (!err) misbehave(conn, ch);
      });
    });
    conn.on('tcpip', (accept) => misbehave(conn, accept()));
  });
  const tcp = createServer((sock) => {
    sock.on('error', () => {});
    if (behaviour === 'reset-before-banner') sock.once('data', () => sock.resetAndDestroy());
    else server.injectSocket(sock);
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const address = `127.0.0.1:${(tcp.address() as { port: number }).port}`;
  const node = await enrollOnlineNode(stack.call, stack.adminToken, name, address, publicKey);
  const held: { name: string; port: number }[] = [];
  const heartbeat = setInterval(() => void nodeHeartbeat(stack.call, node, held).catch(() => {}), HEARTBEAT_MS);
  heartbeat.unref();
  return {
    name,
    node,
    async hold(exposure, port) {
      const key = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey));
      const lease = await stack.call('POST', '/v1/leases', { token: stack.adminToken, body: { kind: 'expose', exposure, port, public_key: key } });
      expectStatus(lease, 201, `expose lease for ${exposure}`);
      if ((lease.body as { relay: { name: string } }).relay.name !== name) throw new Error(`the lease for ${exposure} is not on ${name}: pin it with --node ${name}`);
      held.push({ name: exposure, port });
      await nodeHeartbeat(stack.call, node, held);
    },
    overrun,
    flood,
    async stop() {
      clearInterval(heartbeat);
      for (const c of conns) c.end();
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}
