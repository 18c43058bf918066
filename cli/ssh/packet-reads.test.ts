/**
 * The local socket's reads going straight into SSH packets (packet-reads.ts), on a real ssh2
 * server and client over loopback joined to a real local TCP connection as the CLI joins them
 * (pipe.ts): what the local peer writes arrives whole at the server for every cipher the CLI can
 * negotiate, whatever the write sizes; across re-keys (packets then go through ssh2's own path);
 * and a server that stops reading stops the local peer, with at most one read held in between.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import ssh2, { type Connection, type ServerChannel } from 'ssh2';
import { channelSocket, channelWindow, IN_PLACE_HEAD, IN_PLACE_TAIL, installPooledPadding, socketOf } from '../../node/ssh2-internals.js';
import { formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';
import { movableToOnread } from './packet-reads.js';
import { joinSocketAndChannel } from './pipe.js';
import { SOCKET_SEND_LIMIT } from './send-backpressure.js';
import { digestUntilEnd } from '../../test/harness/streams.js';

const MiB = 1024 * 1024;
const require = createRequire(import.meta.url);

/** Packets ssh2 built itself (Protocol#channelData), those of them built during a key exchange, and their data bytes. */
const viaSsh2 = { packets: 0, duringKex: 0, bytes: 0 };
const Protocol = (require('ssh2/lib/protocol/Protocol.js') as { prototype: { channelData: (...a: unknown[]) => void } }).prototype;
const channelData = Protocol.channelData;
Protocol.channelData = function (this: { _kexinit?: unknown }, ...a: unknown[]) {
  viaSsh2.packets++;
  if (this._kexinit !== undefined) viaSsh2.duringKex++;
  viaSsh2.bytes += (a[1] as Buffer).length;
  return channelData.apply(this, a);
};
after(() => {
  Protocol.channelData = channelData;
});

interface Rig {
  /** The server's end of the channel, and its connection. */
  ch: ServerChannel;
  conn: Connection;
  /** The client's channel, joined to the CLI's end of the local connection. */
  channel: Duplex & { outgoing: { window: number; packetSize: number } };
  /** The local application's end of the joined connection. */
  peer: Socket;
  /** Bytes read from the local peer so far. */
  readLocally(): number;
  /** Bytes the join counted into its gc pacer so far (both ways). */
  paced(): number;
  /** The join's byte counts once both sides closed. */
  closed: Promise<[number, number]>;
  close(): void;
}

/**
 * A real ssh2 server and client (`cipher`, `hmac`) on loopback, a direct-tcpip channel, and a
 * local TCP connection accepted with pauseOnConnect (as `tunnel open --listen` accepts), joined.
 */
async function rig(cipher: string, hmac?: string): Promise<Rig> {
  installPooledPadding();
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  let serverSide!: (s: { ch: ServerChannel; conn: Connection }) => void;
  const accepted = new Promise<{ ch: ServerChannel; conn: Connection }>((r) => (serverSide = r));
  const sshd = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('tcpip', (accept) => serverSide({ ch: accept(), conn }));
  });
  await new Promise<void>((r) => sshd.listen(0, '127.0.0.1', r));
  const client = new ssh2.Client();
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({
      host: '127.0.0.1',
      port: (sshd.address() as AddressInfo).port,
      username: 'u',
      hostVerifier: () => true,
      algorithms: { cipher: [cipher as ssh2.CipherAlgorithm], ...(hmac ? { hmac: [hmac as ssh2.MacAlgorithm] } : {}) },
    });
  });
  const local = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  local.listen(0, '127.0.0.1');
  await once(local, 'listening');
  const connection = once(local, 'connection') as Promise<[Socket]>;
  const peer = connect({ host: '127.0.0.1', port: (local.address() as AddressInfo).port, allowHalfOpen: true });
  const [sock] = await connection;
  assert.ok(movableToOnread(sock), 'a socket accepted with pauseOnConnect can read into packets');
  const channel = await new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch))));
  const { ch, conn } = await accepted;
  let paced = 0;
  let joined!: Socket;
  const closed = new Promise<[number, number]>((resolve) => (joined = joinSocketAndChannel(sock, channel, (a, b) => resolve([a, b]), { read: (n) => (paced += n) })));
  return {
    ch,
    conn,
    channel: channel as Rig['channel'],
    peer,
    readLocally: () => joined.bytesRead,
    paced: () => paced,
    closed,
    close() {
      peer.destroy();
      client.end();
      conn.end();
      sshd.close();
      local.close();
    },
  };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Writes `data` to `s` in chunks of the sizes in turn (with backpressure), then ends it. */
async function writeInChunks(s: Socket, data: Buffer, sizes: number[], between?: (written: number) => void): Promise<void> {
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - off);
    if (!s.write(data.subarray(off, off + n))) await once(s, 'drain');
    off += n;
    between?.(off);
  }
  s.end();
}

/** Resolves once `cond()` holds, checked after each turn of the event loop (at most `ms`). */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ODD_SIZES = [1, 7, 4093, 65537, 100_000, 13, 32768, 32755, 200_001];

/**
 * A packet lost or mangled on the way can stall a transfer rather than break the connection (ssh2
 * answers a message it cannot parse with UNIMPLEMENTED and carries on): a stalled test fails.
 */
const STALL = { timeout: 60_000 };

describe('reading a local socket straight into SSH packets', () => {
  const ciphers: [string, string?][] = [
    ['aes128-gcm@openssh.com'],
    ['aes256-gcm@openssh.com'],
    ['chacha20-poly1305@openssh.com'],
    ['aes128-ctr', 'hmac-sha2-256-etm@openssh.com'],
    ['aes256-ctr', 'hmac-sha2-512'],
  ];
  for (const [cipher, hmac] of ciphers) {
    it(`delivers every byte in order, both ways, with ${cipher}${hmac ? ` and ${hmac}` : ''}, built in place`, STALL, async () => {
      const r = await rig(cipher, hmac);
      try {
        const before = viaSsh2.packets;
        const up = randomBytes(6 * MiB + 12_345);
        const down = randomBytes(300_001);
        const atServer = digestUntilEnd(r.ch);
        const atPeer = digestUntilEnd(r.peer);
        await writeInChunks(r.peer, up, ODD_SIZES);
        assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
        // Half-close: the local peer's end reached the server, which can still answer.
        r.ch.end(down);
        assert.deepEqual(await atPeer, { bytes: down.length, sha: sha(down) });
        assert.deepEqual(await r.closed, [up.length, down.length]);
        // At least 6 MiB / 32 KiB = 192 packets went up; nearly all were built in place.
        const ssh2Built = viaSsh2.packets - before;
        assert.ok(ssh2Built < 20, `${ssh2Built} packets went through ssh2's own channelData`);
      } finally {
        r.close();
      }
    });
  }

  it('paces collections by what its reads allocate: a fresh packet buffer or the bytes ssh2 copies, never a reused packet', STALL, async () => {
    // ssh2's server announces 32 KiB packets: each read's buffer is one such packet with room around it.
    const size = IN_PLACE_HEAD + 32 * 1024 + IN_PLACE_TAIL;
    const allocUnsafe = Buffer.allocUnsafe;
    let packetBuffers = 0;
    Buffer.allocUnsafe = (n: number) => {
      if (n === size) packetBuffers++;
      return allocUnsafe(n);
    };
    const r = await rig('aes128-gcm@openssh.com').catch((err: unknown) => {
      Buffer.allocUnsafe = allocUnsafe;
      throw err;
    });
    try {
      assert.equal(r.channel.outgoing.packetSize, 32 * 1024);
      const before = { ...viaSsh2 };
      const up = randomBytes(16 * MiB + 333);
      const atServer = digestUntilEnd(r.ch);
      // A key exchange midway: reads then go through ssh2's own path, which copies them.
      await writeInChunks(r.peer, up, ODD_SIZES, (off) => {
        if (off >= up.length / 2 && off - 200_001 < up.length / 2) r.conn.rekey();
      });
      assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
      const copied = viaSsh2.bytes - before.bytes;
      assert.ok(copied > 0, 'some reads went through ssh2 (the test exercises the copy)');
      assert.ok(packetBuffers > 0, 'the first read allocated its packet buffer');
      assert.equal(r.paced(), packetBuffers * size + copied, 'paced by packet buffers allocated and bytes copied, not by bytes read');
      assert.equal(r.readLocally(), up.length);
    } finally {
      Buffer.allocUnsafe = allocUnsafe;
      r.close();
    }
  });

  it('sends through ssh2 during key exchanges, and the data stays whole across them', STALL, async () => {
    const r = await rig('aes128-gcm@openssh.com');
    try {
      const before = { ...viaSsh2 };
      const up = randomBytes(24 * MiB);
      const atServer = digestUntilEnd(r.ch);
      let rekeys = 0;
      let rekeying = false;
      // The server starts a key exchange whenever the last one finished, while data flows.
      const rekey = () => {
        if (rekeying) return;
        rekeying = true;
        r.conn.rekey(() => {
          rekeying = false;
          rekeys++;
        });
      };
      await writeInChunks(r.peer, up, ODD_SIZES, rekey);
      assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
      assert.ok(rekeys >= 2, `${rekeys} key exchanges during the transfer`);
      // Reads that landed mid-exchange went through ssh2 (which queues bare payloads then).
      assert.ok(viaSsh2.duringKex > before.duringKex, 'no read landed during a key exchange: the test did not exercise it');
    } finally {
      r.close();
    }
  });

  it('a packet waiting in the SSH socket is never the next read\'s buffer; reading stops while the socket holds more than its limit', STALL, async () => {
    const r = await rig('aes128-gcm@openssh.com');
    try {
      // A window far larger than the kernel's socket buffers, and a server that stops reading its
      // TCP socket: the client's packets queue in its SSH socket (as toward a busy relay).
      channelWindow(r.ch).grant(30 * MiB);
      const serverSock = socketOf(r.conn);
      serverSock.pause();
      const up = randomBytes(40 * MiB);
      const writing = writeInChunks(r.peer, up, ODD_SIZES);
      const ssh = channelSocket(r.channel)!;
      await until(() => ssh.writableLength > SOCKET_SEND_LIMIT, 'packets queued in the SSH socket');
      const held = r.readLocally();
      for (let i = 0; i < 20; i++) await new Promise((res) => setTimeout(res, 5));
      assert.equal(r.readLocally(), held, 'the local socket was read while the SSH socket was over its limit');
      assert.ok(ssh.writableLength <= SOCKET_SEND_LIMIT + 64 * 1024, `${ssh.writableLength} bytes queued in the SSH socket`);
      const atServer = digestUntilEnd(r.ch);
      serverSock.resume();
      await writing;
      assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
    } finally {
      r.close();
    }
  });

  it('a server that stops reading stops the local peer: the CLI holds at most one read beyond the window', STALL, async () => {
    const r = await rig('aes128-gcm@openssh.com');
    try {
      r.ch.pause();
      const up = randomBytes(32 * MiB);
      const writing = writeInChunks(r.peer, up, [65536]);
      const maxRead = Math.min(r.channel.outgoing.packetSize, 64 * 1024 - IN_PLACE_HEAD - IN_PLACE_TAIL);
      // The window runs out; the next read waits in the channel's Writable side for more. The
      // server has received all it granted (its window 0 too: no grant still on its way, which
      // under load could reach the client after this and let it read again).
      await until(() => r.channel.outgoing.window === 0 && channelWindow(r.ch).window() === 0 && r.channel.writableLength > 0, 'the window used up and a read waiting for it');
      const held = r.readLocally();
      // Time for reads that should not happen (the local peer has megabytes queued).
      for (let i = 0; i < 20; i++) await new Promise((res) => setTimeout(res, 5));
      assert.equal(r.readLocally(), held, 'the local socket was read past a used-up window');
      assert.ok(r.channel.writableLength <= maxRead, `${r.channel.writableLength} bytes waiting in the channel, more than one read (${maxRead})`);
      assert.ok(channelSocket(r.channel)!.writableLength <= SOCKET_SEND_LIMIT + 64 * 1024, 'the SSH socket queue stayed bounded');
      assert.ok(r.peer.writableLength > 0, 'the local peer was not held back');
      assert.ok(held < up.length / 2, `${held} of ${up.length} bytes read while the server read nothing`);
      // The server reads again: everything arrives, whole.
      const atServer = digestUntilEnd(r.ch);
      r.ch.resume();
      await writing;
      assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
    } finally {
      r.close();
    }
  });
});
