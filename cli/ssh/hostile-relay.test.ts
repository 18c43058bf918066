/**
 * A hostile relay against the CLI's own SSH connection code, in process: the relay is a real
 * ssh2 server that accepts any client, and the CLI's side is the real connectRelay
 * (relay-connection.ts) and, for data, the real joinSocketAndChannel (pipe.ts) on a real local
 * TCP connection, as `tunnel expose` and `tunnel open --listen` use them.
 * - A relay that makes the CLI answer as fast as it can and never reads: global requests wanting
 *   a reply (keepalive@openssh.com), channel requests wanting a reply, channel opens the CLI
 *   refuses; all the while it sends an unasked REQUEST_SUCCESS every 50 ms, which ssh2 takes as
 *   its keepalive's answer. The CLI disconnects it once UNSENT_ANSWERS sit unsent
 *   (answer-bound.ts), with a one-line reason. Before: the answers piled up in the socket
 *   without end (290 MB of RSS in 20 s).
 * - A relay that grants a ~32 GiB window, starts a key exchange and never finishes it: the CLI's
 *   channel writes wait while ssh2's key exchange queue holds more than SOCKET_SEND_LIMIT, so the
 *   local peer is stopped instead (send-backpressure.ts). Before: everything the local peer sent
 *   went into the queue (650 MB in 20 s).
 * - The same relay against a channel fed by a stream (`tunnel open --stdio` pipes stdin into it,
 *   with holdChannelWrites), and a relay that grants that window and never reads.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import ssh2, { type Client, type Connection } from 'ssh2';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { encodeCertificate, formatCertificateLine } from '../../protocol/ssh-cert.js';
import { formatOpenSshPrivateKey, formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { clientSocket, keyExchangeQueue } from '../../node/ssh2-internals.js';
import { UNSENT_ANSWERS } from './answer-bound.js';
import { joinSocketAndChannel } from './pipe.js';
import { connectRelay, type RelayError } from './relay-connection.js';
import { holdChannelWrites, SOCKET_SEND_LIMIT } from './send-backpressure.js';

const MiB = 1024 * 1024;
/**
 * A relay's keepalive is given up after 4 × 1 s without an answer here (20 s in the CLI): each
 * attack below runs until then, which is long enough for a CLI without a bound to pass RUNAWAY.
 */
const TIMINGS = { keepaliveIntervalMs: 1_000, keepaliveCountMax: 3, readyTimeoutMs: 15_000 };
/** Past this much held, the CLI has no bound (each check fails well before memory runs out). */
const RUNAWAY = 24 * MiB;

interface ServerInternals {
  _sock: Socket;
  _protocol: {
    _server: boolean;
    ping(): void;
    requestSuccess(): void;
    rekey(): void;
    channelWindowAdjust(id: number, n: number): void;
    exec(id: number, cmd: string, wantReply: boolean): void;
    forwardedTcpip(id: number, window: number, packetSize: number, cfg: { boundAddr: string; boundPort: number; remoteAddr: string; remotePort: number }): void;
  };
}
const internals = (c: Connection) => c as unknown as ServerInternals;

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});

/** Resolves once `cond()` holds, checked every few ms (at most `ms`). */
async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A relay that accepts anyone and hands each connection to `behave`; a lease that points the CLI at it. */
async function hostileRelay(behave: (conn: Connection) => void): Promise<{ issued: LeaseIssued; key: ReturnType<typeof generateKeyPairSync>['privateKey'] }> {
  const host = generateKeyPairSync('ed25519');
  const server = new ssh2.Server({ hostKeys: [formatOpenSshPrivateKey(host.privateKey)] }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    behave(conn);
  });
  const socks: Socket[] = [];
  const tcp = createServer((sock) => {
    socks.push(sock);
    sock.on('error', () => {});
    server.injectSocket(sock);
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    // A relay that stopped reading would not see the CLI hang up.
    for (const s of socks) s.destroy();
    tcp.close();
  });
  const port = (tcp.address() as { port: number }).port;
  const ca = generateKeyPairSync('ed25519');
  const user = generateKeyPairSync('ed25519');
  const now = BigInt(Math.floor(Date.now() / 1000));
  const cert = encodeCertificate(
    { publicKey: rawPublicKey(user.publicKey), serial: 1n, type: 'user', keyId: 'hostile', principals: ['bob'], validAfter: now - 60n, validBefore: now + 3600n },
    ca.privateKey,
  );
  const issued = {
    lease: { id: 'lease-hostile', user: 'bob' },
    certificate: formatCertificateLine(cert),
    relay: { node_id: 'node-hostile', name: 'hostile', address: `127.0.0.1:${port}`, host_key: formatPublicKeyLine(rawPublicKey(host.publicKey)) },
  } as unknown as LeaseIssued;
  return { issued, key: user.privateKey };
}

/** Connects as the CLI does; the first error after ready, and the close. */
async function cliConnect(issued: LeaseIssued, key: ReturnType<typeof generateKeyPairSync>['privateKey']): Promise<{ client: Client; error: () => RelayError | undefined; closed: Promise<void> }> {
  let error: RelayError | undefined;
  const client = await connectRelay(issued, key, TIMINGS, (err) => (error ??= err));
  cleanups.push(() => client.destroy());
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  return { client, error: () => error, closed };
}

/** Grants `channel` (the server's end) about 32 GiB of window, starts a re-key and stops reading: the key exchange never finishes. */
function hugeWindowThenStallRekey(conn: Connection, remoteId: number): void {
  const { _protocol: proto, _sock: sock } = internals(conn);
  for (let i = 0; i < 8; i++) proto.channelWindowAdjust(remoteId, 0xffffffff);
  sock.pause();
  proto.rekey();
}

/** A local service that writes to each connection as fast as it can. */
async function pushingService(): Promise<{ server: Server; port: number }> {
  const chunk = Buffer.alloc(64 * 1024, 0x42);
  const socks: Socket[] = [];
  const server = createServer((s) => {
    socks.push(s);
    s.on('error', () => {});
    // Beyond the kernel's buffers, what the CLI does not read backs up here (to 8 MiB).
    const go = () => {
      if (s.destroyed) return;
      for (let i = 0; i < 16 && s.writableLength < 8 * MiB; i++) s.write(chunk);
      if (s.writableLength >= 8 * MiB) s.once('drain', go);
      else setImmediate(go);
    };
    go();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { server, port: (server.address() as { port: number }).port };
}

/** What a flooding relay makes the CLI answer, one packet each. */
const FLOODS = {
  'global requests wanting a reply (keepalive@openssh.com)': (proto: ServerInternals['_protocol']) => proto.ping(),
  // ssh2 builds an exec request only in client mode; the packet is the same from a server.
  'channel requests wanting a reply': (proto: ServerInternals['_protocol'], channel: number) => {
    proto._server = false;
    try {
      proto.exec(channel, 'x', true);
    } finally {
      proto._server = true;
    }
  },
  'channel opens the CLI refuses (forwarded-tcpip for no forward)': (() => {
    let id = 0;
    return (proto: ServerInternals['_protocol']) => proto.forwardedTcpip(id++ % 0xffffffff, 2 * MiB, 32 * 1024, { boundAddr: 'nowhere', boundPort: 1, remoteAddr: '192.0.2.1', remotePort: 2 });
  })(),
} as const;

describe('the CLI against a hostile relay (connectRelay, joinSocketAndChannel)', { timeout: 120_000 }, () => {
  for (const [kind, answerMe] of Object.entries(FLOODS)) {
    it(`a relay that floods ${kind} and never reads is disconnected once the answers pile up`, async () => {
      const { issued, key } = await hostileRelay((conn) => {
        const { _protocol: proto, _sock: sock } = internals(conn);
        const flood = (channel: number) => {
          sock.pause();
          // Unasked answers, which ssh2's client takes as its keepalive's: the relay looks alive.
          const fake = setInterval(() => proto.requestSuccess(), 50);
          sock.once('close', () => clearInterval(fake));
          const burst = () => {
            if (sock.destroyed) return;
            for (let i = 0; i < 2000; i++) answerMe(proto, channel);
            // The relay's own socket backs up if the CLI stops reading it.
            if (sock.writableLength > 8 * MiB) return;
            setImmediate(burst);
          };
          burst();
        };
        // Channel requests need a channel: the one the CLI opens below.
        conn.on('tcpip', (accept) => {
          const ch = accept();
          ch.on('error', () => {});
          flood((ch as unknown as { outgoing: { id: number } }).outgoing.id);
        });
        if (!kind.startsWith('channel requests')) conn.on('ready', () => flood(0));
      });
      const { client, error, closed } = await cliConnect(issued, key);
      if (kind.startsWith('channel requests')) client.forwardOut('127.0.0.1', 0, 'x', 1, () => {});
      const sock = clientSocket(client);
      const queued = keyExchangeQueue(client);
      let gone = false;
      void closed.then(() => (gone = true));
      let peak = 0;
      await until(() => {
        if (!sock.destroyed) peak = Math.max(peak, sock.writableLength + queued());
        return gone || peak > RUNAWAY;
      }, 'the CLI disconnected the relay or held its answers');
      // The bytes bound, and Node's kernel-bound slack: what one read of the flood was answered with.
      assert.ok(peak <= UNSENT_ANSWERS.bytes + 512 * 1024, `the CLI held ${peak} bytes of answers unsent`);
      await closed;
      const err = error();
      assert.equal(err?.level, 'protocol', `the CLI ended the connection for cause (${err?.level}: ${err?.message})`);
      assert.match(err?.message ?? '', /^the relay left \d+ answers to its requests unread \(\d+ bytes\); disconnected$/);
    });
  }

  it("a relay that grants a huge window and never finishes a re-key: the local peer is stopped, not queued (tunnel expose's and open --listen's join)", async () => {
    const service = await pushingService();
    let stalled = false;
    const { issued, key } = await hostileRelay((conn) => {
      conn.on('tcpip', (accept) => {
        const ch = accept();
        ch.on('error', () => {});
        hugeWindowThenStallRekey(conn, (ch as unknown as { outgoing: { id: number } }).outgoing.id);
        stalled = true;
      });
    });
    const { client, closed } = await cliConnect(issued, key);
    const local = connect({ port: service.port, host: '127.0.0.1', allowHalfOpen: true });
    local.pause();
    await once(local, 'connect');
    const channel = await new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 0, 'x', 1, (err, ch) => (err ? reject(err) : resolve(ch))));
    const joined = joinSocketAndChannel(local, channel, () => {});
    cleanups.push(() => joined.destroy());
    const queued = keyExchangeQueue(client);
    let gone = false;
    void closed.then(() => (gone = true));
    let peak = 0;
    const sock = clientSocket(client);
    await until(() => {
      if (!sock.destroyed) peak = Math.max(peak, queued());
      return gone || peak > RUNAWAY;
    }, 'the keepalive ended the connection or the CLI queued its data');
    assert.ok(stalled, 'the relay stalled a re-key');
    assert.ok(peak <= SOCKET_SEND_LIMIT + 128 * 1024, `the CLI queued ${peak} bytes during the key exchange`);
  });

  it('a stream piped into a channel (open --stdio) waits for a key exchange queue and for a relay that does not read', async () => {
    for (const behaviour of ['stalled re-key', 'never reads'] as const) {
      let stalled = false;
      const { issued, key } = await hostileRelay((conn) => {
        conn.on('tcpip', (accept) => {
          const ch = accept();
          ch.on('error', () => {});
          ch.once('data', () => {
            const id = (ch as unknown as { outgoing: { id: number } }).outgoing.id;
            if (behaviour === 'stalled re-key') hugeWindowThenStallRekey(conn, id);
            else {
              const { _protocol: proto, _sock: sock } = internals(conn);
              for (let i = 0; i < 8; i++) proto.channelWindowAdjust(id, 0xffffffff);
              sock.pause();
            }
            stalled = true;
          });
        });
      });
      const { client, closed } = await cliConnect(issued, key);
      const channel = await new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 0, 'x', 1, (err, ch) => (err ? reject(err) : resolve(ch))));
      channel.on('error', () => {});
      assert.equal(holdChannelWrites(channel), true);
      let produced = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x43);
      const stdin = new Readable({
        read() {
          // A read per turn of the event loop, as from a pipe.
          setImmediate(() => {
            produced += chunk.length;
            this.push(chunk);
          });
        },
      });
      stdin.pipe(channel);
      // As open --stdio does (it pipes the channel to stdout, so it ends and closes): a stream that never ends would go on into the closed channel.
      channel.resume();
      channel.once('close', () => stdin.unpipe(channel));
      const sock = clientSocket(client);
      const queued = keyExchangeQueue(client);
      const held = () => sock.writableLength + queued();
      let gone = false;
      void closed.then(() => (gone = true));
      let peak = 0;
      await until(() => {
        // While the connection is up: once it is gone, what ssh2 still takes is dropped with it.
        if (!sock.destroyed) peak = Math.max(peak, held());
        return gone || peak > RUNAWAY;
      }, `${behaviour}: the keepalive ended the connection or the CLI held the stream`);
      assert.ok(stalled, `${behaviour}: the relay stalled`);
      // Beyond the limit: the one chunk ssh2 was writing (sent whole once the window allows).
      assert.ok(peak <= SOCKET_SEND_LIMIT + 128 * 1024, `${behaviour}: the CLI held ${peak} bytes (the stream produced ${produced})`);
      stdin.unpipe(channel);
      stdin.destroy();
      client.destroy();
    }
  });
});
