/**
 * The protocol fixes in ssh2-internals.ts, on stand-ins for ssh2's connection internals (the
 * real clients that needed them are in test/interop: plink.test.ts, openssh-algorithms.test.ts).
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { SshReader } from '../protocol/ssh-wire.js';
import { majorCollector } from '../shared/gc.js';
import { serverAlgorithms } from './ssh-algorithms.js';
import { clientSocket, dropRequestsAfterClose, enforceChannelLimits, forgetKeyExchangeSecrets, MIN_CHANNEL_PACKET, type ChannelLimitViolation, hostKeyWithKeyObject, installPooledPadding, ORIGINAL_ALLOC_PACKET, sampleCiphers, sendServerSigAlgs, Ssh2Server, timePings } from './ssh2-internals.js';

describe('dropRequestsAfterClose', () => {
  function fakeConnection(channels: Map<number, unknown>) {
    const seen: { recipient: number; type: string; wantReply: boolean }[] = [];
    const conn = Object.assign(new EventEmitter(), {
      _chanMgr: { get: (id: number) => channels.get(id) },
      _protocol: {
        _handlers: {
          CHANNEL_REQUEST: (_p: unknown, recipient: number, type: string, wantReply: boolean) => seen.push({ recipient, type, wantReply }),
        },
      },
    });
    dropRequestsAfterClose(conn as unknown as Connection);
    const request = (recipient: number) =>
      conn._protocol._handlers.CHANNEL_REQUEST(undefined, recipient, 'winadj@putty.projects.tartarus.org', true);
    return { seen, request };
  }

  it('passes requests on open (or half-closed) channels and unknown ids to ssh2', () => {
    const { seen, request } = fakeConnection(
      new Map<number, unknown>([
        [0, { outgoing: { state: 'open' } }],
        [1, { outgoing: { state: 'eof' } }],
      ]),
    );
    request(0);
    request(1);
    request(7);
    assert.deepEqual(
      seen.map((s) => s.recipient),
      [0, 1, 7],
    );
  });

  it('drops requests on a channel the relay has sent CHANNEL_CLOSE for, so no reply goes out', () => {
    const { seen, request } = fakeConnection(
      new Map<number, unknown>([
        [2, { outgoing: { state: 'closing' } }],
        [3, { outgoing: { state: 'closed' } }],
      ]),
    );
    request(2);
    request(3);
    assert.deepEqual(seen, []);
  });

  it('says which internal is missing when ssh2 changed', () => {
    const conn = Object.assign(new EventEmitter(), { _protocol: { _handlers: {} } });
    assert.throws(() => dropRequestsAfterClose(conn as unknown as Connection), /ssh2 internals changed: CHANNEL_REQUEST/);
  });
});

describe('enforceChannelLimits', () => {
  /** A stand-in for ssh2's connection: its channel table and the four handlers the check wraps. */
  function fakeConnection(channels = new Map<number, unknown>()) {
    const delivered: { recipient: number; bytes: number; kind: string }[] = [];
    const passed: string[] = [];
    const violations: ChannelLimitViolation[] = [];
    const deliver = (kind: string) => (_p: unknown, recipient: number, data: Buffer) => delivered.push({ recipient, bytes: data.length, kind });
    const conn = Object.assign(new EventEmitter(), {
      _chanMgr: { get: (id: number) => channels.get(id) },
      _protocol: {
        _handlers: {
          CHANNEL_DATA: deliver('data'),
          CHANNEL_EXTENDED_DATA: deliver('extended'),
          CHANNEL_OPEN: (_p: unknown, info: { type: string }) => passed.push(`open ${info.type}`),
          CHANNEL_OPEN_CONFIRMATION: (_p: unknown, info: { recipient: number }) => passed.push(`confirm ${info.recipient}`),
        },
      },
    });
    enforceChannelLimits(conn as unknown as Connection, (v) => violations.push(v));
    const h = conn._protocol._handlers;
    return {
      delivered,
      passed,
      violations,
      data: (id: number, n: number) => h.CHANNEL_DATA(undefined, id, Buffer.alloc(n)),
      ext: (id: number, n: number) => h.CHANNEL_EXTENDED_DATA(undefined, id, Buffer.alloc(n)),
      open: (packetSize: number) => h.CHANNEL_OPEN(undefined, { type: 'direct-tcpip', sender: 0, packetSize } as never),
      confirm: (packetSize: number) => h.CHANNEL_OPEN_CONFIRMATION(undefined, { recipient: 1, packetSize } as never),
    };
  }

  it('hands ssh2 data up to the window left, on channels, server sessions and unknown ids', () => {
    const { delivered, violations, data, ext } = fakeConnection(
      new Map<number, unknown>([
        [0, { incoming: { window: 100 } }],
        [1, { _channel: { incoming: { window: 10 } } }],
      ]),
    );
    data(0, 100);
    data(1, 10);
    ext(0, 0);
    data(9, 5000); // ssh2 ignores an unknown channel itself
    assert.deepEqual(violations, []);
    assert.deepEqual(
      delivered.map((d) => d.recipient),
      [0, 1, 0, 9],
    );
  });

  it('refuses the first packet longer than the window left, once, and delivers nothing more on any channel', () => {
    const { delivered, passed, violations, data, ext, open } = fakeConnection(
      new Map<number, unknown>([
        [0, { incoming: { window: 27_152 } }],
        [1, { incoming: { window: 1 << 20 } }],
      ]),
    );
    data(0, 30_000);
    data(0, 10);
    data(1, 10);
    ext(1, 10);
    open(0);
    open(32768);
    assert.deepEqual(violations, [{ kind: 'window_exceeded', channel: 0, window: 27_152, bytes: 30_000 }]);
    assert.deepEqual(delivered, []);
    assert.deepEqual(passed, []);
  });

  it('refuses extended data past the window too, and data at a window of 0', () => {
    const a = fakeConnection(new Map<number, unknown>([[0, { incoming: { window: 5 } }]]));
    a.ext(0, 6);
    assert.deepEqual(a.violations, [{ kind: 'window_exceeded', channel: 0, window: 5, bytes: 6 }]);
    const b = fakeConnection(new Map<number, unknown>([[0, { incoming: { window: 0 } }]]));
    b.data(0, 1);
    assert.deepEqual(b.violations, [{ kind: 'window_exceeded', channel: 0, window: 0, bytes: 1 }]);
  });

  it('passes opens and confirmations that announce at least the minimum', () => {
    const c = fakeConnection();
    c.open(MIN_CHANNEL_PACKET);
    c.open(32768);
    c.confirm(16384);
    assert.deepEqual(c.passed, ['open direct-tcpip', 'open direct-tcpip', 'confirm 1']);
    assert.deepEqual(c.violations, []);
  });

  it('refuses an open or a confirmation below the minimum once, and passes nothing after it', () => {
    const a = fakeConnection(new Map<number, unknown>([[0, { incoming: { window: 100 } }]]));
    a.open(0);
    a.open(32768);
    a.confirm(32768);
    a.data(0, 1);
    assert.deepEqual(a.violations, [{ kind: 'packet_size_too_small', packetSize: 0, min: MIN_CHANNEL_PACKET, type: 'direct-tcpip' }]);
    assert.deepEqual(a.passed, []);
    assert.deepEqual(a.delivered, []);
    const b = fakeConnection();
    b.confirm(MIN_CHANNEL_PACKET - 1);
    assert.deepEqual(b.violations, [{ kind: 'packet_size_too_small', packetSize: MIN_CHANNEL_PACKET - 1, min: MIN_CHANNEL_PACKET, type: 'confirmation' }]);
    assert.deepEqual(b.passed, []);
  });

  it('says which internal is missing when ssh2 changed', () => {
    const conn = Object.assign(new EventEmitter(), {
      _chanMgr: { get: () => undefined },
      _protocol: { _handlers: { CHANNEL_DATA: () => {}, CHANNEL_OPEN: () => {}, CHANNEL_OPEN_CONFIRMATION: () => {} } },
    });
    assert.throws(() => enforceChannelLimits(conn as unknown as Connection, () => {}), /ssh2 internals changed: CHANNEL_EXTENDED_DATA/);
    const noConfirm = Object.assign(new EventEmitter(), { _chanMgr: { get: () => undefined }, _protocol: { _handlers: { CHANNEL_OPEN: () => {} } } });
    assert.throws(() => enforceChannelLimits(noConfirm as unknown as Connection, () => {}), /ssh2 internals changed: CHANNEL_OPEN or CHANNEL_OPEN_CONFIRMATION/);
  });
});

describe('enforceChannelLimits on a real ssh2 client', () => {
  it('refuses a server that sends past the window: the channel holds no more than was granted', async () => {
    const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const SENT = 8 << 20;
    let sent = 0;
    const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
      conn.on('error', () => {});
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('tcpip', (accept) => {
        const ch = accept() as unknown as { outgoing: { id: number } };
        // Whatever the client grants: 30,000-byte packets (not a divisor of the 2 MiB window).
        const proto = (conn as unknown as { _protocol: { channelData(id: number, d: Buffer): void } })._protocol;
        const chunk = Buffer.alloc(30_000, 0x61);
        for (; sent < SENT; sent += chunk.length) proto.channelData(ch.outgoing.id, chunk);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new ssh2.Client();
    client.on('error', () => {});
    const overruns: ChannelLimitViolation[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('ready', resolve).once('error', reject);
        client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'u', hostVerifier: () => true });
        enforceChannelLimits(client, (o) => {
          overruns.push(o);
          client.destroy();
        });
      });
      // Nobody reads the channel: ssh2 grants until its readable side is full, then nothing more.
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, c) => (err ? reject(err) : resolve(c))));
      // Bounded: without the check the client never closes, and the assertions below say why.
      await new Promise<void>((r) => {
        client.once('close', () => r());
        setTimeout(r, 20_000).unref();
      });
      assert.equal(overruns.length, 1, 'the overrun was noticed once');
      const o = overruns[0]!;
      assert.ok(o.kind === 'window_exceeded' && o.bytes > o.window, JSON.stringify(overruns));
      assert.ok(ch.readableLength <= 4 << 20, `the channel holds ${ch.readableLength} bytes of the ${sent} sent`);
    } finally {
      client.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('sendServerSigAlgs', () => {
  function fakeConnection(remoteExtInfoEnabled: boolean) {
    const sent: Buffer[] = [];
    const order: string[] = [];
    const kex = { remoteExtInfoEnabled };
    const proto = {
      _handlers: {},
      _kex: kex,
      _kexinit: undefined,
      _cipher: { encrypt: (p: Buffer) => (sent.push(Buffer.from(p)), order.push('ext-info')) },
      _packetRW: { write: { allocStart: 0, alloc: (n: number) => Buffer.alloc(n), finalize: (p: Buffer) => p } },
      // Like ssh2: its own EXT_INFO is sent only while the flag is still set, then 'handshake'.
      _onHandshakeComplete: () => {
        if (kex.remoteExtInfoEnabled) order.push('ssh2 ext-info');
        conn.emit('handshake', {});
      },
    };
    const conn = Object.assign(new EventEmitter(), { _protocol: proto });
    conn.on('handshake', () => order.push('handshake listeners'));
    sendServerSigAlgs(conn as unknown as Connection, ['ssh-ed25519']);
    return { sent, order, complete: () => proto._onHandshakeComplete() };
  }

  it('replaces ssh2 EXT_INFO with a well-formed server-sig-algs, once, before handshake listeners run', () => {
    const { sent, order, complete } = fakeConnection(true);
    complete();
    complete(); // a re-key: nothing more
    assert.deepEqual(order, ['ext-info', 'handshake listeners', 'handshake listeners']);
    assert.equal(sent.length, 1);
    const r = new SshReader(sent[0]!);
    assert.equal(r.uint8(), 7, 'SSH_MSG_EXT_INFO');
    assert.equal(r.uint32(), 1, 'one extension');
    assert.equal(r.string().toString(), 'server-sig-algs');
    assert.equal(r.string().toString(), 'ssh-ed25519');
    assert.equal(r.remaining(), 0);
  });

  it('sends nothing to a client that did not announce ext-info-c', () => {
    const { sent, order, complete } = fakeConnection(false);
    complete();
    assert.deepEqual(sent, []);
    assert.deepEqual(order, ['handshake listeners']);
  });
});

describe('Ssh2Server', () => {
  it("is ssh2's own Server, required from its file (the relay does not load ssh2's entry point)", () => {
    assert.equal(Ssh2Server, ssh2.Server);
  });
});

describe('hostKeyWithKeyObject', () => {
  it('signs exactly as ssh2 does, verifiably with the host public key', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = formatOpenSshPrivateKey(privateKey);
    const fast = hostKeyWithKeyObject(pem);
    const slow = ssh2.utils.parseKey(pem) as ParsedKey;
    assert.equal(fast.type, 'ssh-ed25519');
    for (const data of [Buffer.alloc(0), Buffer.from('exchange hash'), randomBytes(64)]) {
      const sig = fast.sign(data);
      assert.ok(Buffer.isBuffer(sig));
      assert.deepEqual(sig, slow.sign(data));
      assert.equal(fast.verify(data, sig), true);
      assert.equal(cryptoVerify(null, data, createPublicKey(privateKey), sig), true);
    }
  });
});

describe('installPooledPadding', () => {
  it('builds every cipher class’s packets exactly as ssh2 does, with random padding from the pool', () => {
    installPooledPadding();
    installPooledPadding(); // idempotent: the originals stay the originals
    const ciphers = sampleCiphers();
    const names = ciphers.map((c) => (Object.getPrototypeOf(c) as { constructor: { name: string } }).constructor.name);
    assert.deepEqual(
      [...new Set(names)].sort(),
      ['AESGCMCipherBinding', 'AESGCMCipherNative', 'ChaChaPolyCipherBinding', 'ChaChaPolyCipherNative', 'GenericCipherBinding', 'GenericCipherNative'],
      'all six classes (the native binding is loaded)',
    );
    const sizes = [...Array.from({ length: 300 }, (_, i) => i), 1024, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 9];
    for (const [i, c] of ciphers.entries()) {
      const original = ORIGINAL_ALLOC_PACKET.get(names[i]!);
      assert.ok(original, `original allocPacket of ${names[i]} kept`);
      assert.notEqual(c.allocPacket, original, `${names[i]} uses the pooled padding`);
      for (const n of sizes) {
        const ours = c.allocPacket(n);
        const theirs: Buffer = original.call(c, n);
        const what = `${names[i]}, payload ${n}`;
        assert.equal(ours.length, theirs.length, `${what}: length`);
        assert.deepEqual(ours.subarray(0, 5), theirs.subarray(0, 5), `${what}: packet length and padding length`);
        const pad = ours[4]!;
        assert.ok(pad >= 4, `${what}: at least 4 bytes of padding`);
      }
      c.free();
    }
  });

  it('takes fresh random bytes for each packet', () => {
    installPooledPadding();
    const [c] = sampleCiphers();
    const pads = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const p = c!.allocPacket(11); // 16 bytes of padding for AES-GCM
      pads.add(p.subarray(16, 16 + p[4]!).toString('hex'));
    }
    assert.equal(pads.size, 2000, 'no padding repeated (pool refilled, never reused)');
    for (const s of sampleCiphers()) s.free();
    c!.free();
  });
});

describe('timePings (real ssh2 server and client)', () => {
  /** A real server whose connection's pings are timed on a clock the test sets, and a client connected to it. */
  async function pinged() {
    const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const clock = { t: 0 };
    const rtts: number[] = [];
    let waiting: { n: number; resolve: () => void } | undefined;
    const requests: string[] = [];
    let onRequest: (() => void) | undefined;
    let ping: (() => void) | undefined;
    let resolveReady = () => {};
    const ready = new Promise<void>((r) => (resolveReady = r));
    const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
      conn.on('error', () => {});
      conn.on('authentication', (ctx) => ctx.accept());
      ping = timePings(
        conn,
        (ms) => {
          rtts.push(ms);
          if (waiting && rtts.length >= waiting.n) waiting.resolve();
        },
        () => clock.t,
      );
      conn.on('ready', () => resolveReady());
      conn.on('request', (_accept, reject, name) => {
        requests.push(name);
        reject?.();
        onRequest?.();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new ssh2.Client();
    client.on('error', () => {});
    client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'u', hostVerifier: () => true });
    await ready;
    const clientProto = (client as unknown as { _protocol: { requestSuccess(): void; _handlers: { GLOBAL_REQUEST: (...a: unknown[]) => void } } })._protocol;
    return {
      clock,
      rtts,
      clientProto,
      ping: () => ping!(),
      /**
       * Resolves once `n` replies have been timed. A count, not "the next one": two replies read in
       * one go are timed back to back, before a waiter for the second could be set.
       */
      timed: (n: number) => new Promise<void>((resolve) => (rtts.length >= n ? resolve() : (waiting = { n, resolve }))),
      /** A request from the client, seen by the server once everything the client sent before it was handled. */
      marker: () =>
        new Promise<void>((r) => {
          onRequest = r;
          client.forwardIn('127.0.0.1', 0, () => {});
        }),
      requests,
      async close() {
        client.end();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  it('times each ping to its reply, in order', async () => {
    const p = await pinged();
    try {
      p.clock.t = 100;
      p.ping();
      p.clock.t = 105;
      p.ping();
      p.clock.t = 112; // before either reply can arrive: both are answered later
      await p.timed(2);
      assert.deepEqual(p.rtts, [12, 7]);
    } finally {
      await p.close();
    }
  });

  it('ignores a reply with no ping out, and stops timing when too many pings go unanswered', async () => {
    const p = await pinged();
    try {
      // A reply the server never asked for: no sample.
      p.clientProto.requestSuccess();
      await p.marker();
      assert.deepEqual(p.rtts, []);
      // The client stops answering; 17 pings go out (the 17th is past what can be matched).
      const answer = p.clientProto._handlers.GLOBAL_REQUEST;
      p.clientProto._handlers.GLOBAL_REQUEST = () => {};
      for (let i = 0; i < 17; i++) p.ping();
      await p.marker();
      // It answers again: the replies no longer time anything.
      p.clientProto._handlers.GLOBAL_REQUEST = answer;
      p.ping();
      await p.marker();
      assert.deepEqual(p.rtts, []);
    } finally {
      await p.close();
    }
  });
});

describe('forgetKeyExchangeSecrets (real ssh2 server and client)', () => {
  interface KeyExchangeShape {
    type?: string;
    sessionID?: Buffer;
    _receivedNEWKEYS?: boolean;
    _keys?: object | null;
    finish?: () => unknown;
  }
  const kexOf = (c: Connection | ssh2.Client) => (c as unknown as { _protocol: { _kex: KeyExchangeShape; rekey(): void } })._protocol;

  /**
   * A server and a client with the relay's algorithms, each forgetting its key exchange secrets;
   * a weak reference to what each key exchange held (its x25519 key pair, and `finish` where ssh2
   * replaced it with the closure over the shared secret), taken at each 'handshake' before the
   * fix runs; the client authenticates with a key (the signature covers the session id); an echo
   * channel.
   */
  async function pair(hostCheck: 'at once' | 'after NEWKEYS') {
    const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
    const userKey = generateKeyPairSync('ed25519').privateKey;
    const held: { side: string; what: string; ref: WeakRef<object> }[] = [];
    const sessionIds: { side: string; id: Buffer }[] = [];
    const watch = (c: Connection | ssh2.Client, side: string) => {
      c.on('handshake', () => {
        const kex = kexOf(c)._kex;
        assert.equal(kex.type, '25519');
        assert.ok(kex._keys);
        held.push({ side, what: '_keys', ref: new WeakRef(kex._keys) });
        if (Object.hasOwn(kex, 'finish')) held.push({ side, what: 'finish', ref: new WeakRef(kex.finish!) });
        sessionIds.push({ side, id: kex.sessionID! });
      });
      forgetKeyExchangeSecrets(c);
    };
    let serverConn: Connection | undefined;
    const server = new Ssh2Server({ hostKeys: [hostKey], algorithms: serverAlgorithms() }, (conn) => {
      serverConn = conn;
      conn.on('error', () => {});
      watch(conn, 'server');
      conn.on('authentication', (ctx) => {
        if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
        if (!ctx.signature) return ctx.accept();
        // The signed blob holds the session id, read after the first 'handshake' (dropping it there fails here).
        if (cryptoVerify(null, ctx.blob!, createPublicKey(userKey), ctx.signature)) ctx.accept();
        else ctx.reject();
      });
      conn.on('tcpip', (accept) => {
        const ch = accept();
        ch.on('data', (d: Buffer) => ch.write(d));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new ssh2.Client();
    client.on('error', () => {});
    const ready = new Promise<void>((resolve, reject) => client.once('ready', resolve).once('error', reject));
    // Answered once the server's NEWKEYS was parsed (this listener runs after ssh2's own on each
    // chunk), ssh2's client finishes the exchange in two steps and keeps the secret in its
    // `finish` too; answered at once (as the CLI does), it keeps only the key pair.
    const later = (_key: Buffer, verify: (ok: boolean) => void) => {
      const sock = clientSocket(client);
      const check = () => {
        if (kexOf(client)._kex._receivedNEWKEYS !== true) return;
        sock.off('data', check);
        verify(true);
      };
      sock.on('data', check);
    };
    client.connect({
      host: '127.0.0.1',
      port: (server.address() as { port: number }).port,
      username: 'u',
      privateKey: formatOpenSshPrivateKey(userKey),
      hostVerifier: hostCheck === 'at once' ? () => true : later,
    });
    watch(client, 'client');
    await ready;
    const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, c) => (err ? reject(err) : resolve(c))));
    const gc = majorCollector();
    return {
      held,
      sessionIds,
      server: () => serverConn!,
      client,
      /** What a key exchange held that a full collection did not free, while both ends stay connected. */
      async stillHeld(): Promise<string[]> {
        await new Promise((r) => setImmediate(r)); // weak references keep their target until the job that made them ended
        gc();
        return held.filter((h) => h.ref.deref() !== undefined).map((h) => `${h.side} ${h.what}`);
      },
      /** `bytes` sent on the channel come back from the server's echo. */
      async echo(bytes: Buffer): Promise<Buffer> {
        const got: Buffer[] = [];
        let n = 0;
        const back = new Promise<void>((resolve) => {
          const on = (d: Buffer) => {
            got.push(d);
            n += d.length;
            if (n < bytes.length) return;
            ch.off('data', on);
            resolve();
          };
          ch.on('data', on);
        });
        ch.write(bytes);
        await back;
        return Buffer.concat(got);
      },
      /** `side` starts a key exchange; resolves once both ends finished it. */
      async rekey(side: Connection | ssh2.Client): Promise<void> {
        const done = Promise.all([once(serverConn!, 'handshake'), once(client, 'handshake')]);
        kexOf(side).rekey();
        await done;
      },
      async close() {
        client.end();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  for (const hostCheck of ['at once', 'after NEWKEYS'] as const) {
    it(`after each key exchange both ends hold neither key pair nor the shared secret, and re-keys from either end still carry data (the client's host key check answers ${hostCheck})`, async () => {
      const p = await pair(hostCheck);
      try {
        assert.deepEqual(await p.stillHeld(), []);
        // A server's finish is the closure over the shared secret; a client's too when its check answered late.
        const finishes = p.held.filter((h) => h.what === 'finish').map((h) => h.side);
        assert.deepEqual(finishes.sort(), hostCheck === 'at once' ? ['server'] : ['client', 'server']);
        const data = randomBytes(200_000);
        assert.deepEqual(await p.echo(data), data);

        await p.rekey(p.client);
        assert.deepEqual(await p.echo(data), data);
        await p.rekey(p.server());
        assert.deepEqual(await p.echo(data), data);
        assert.equal(p.held.filter((h) => h.what === '_keys').length, 6, 'three key exchanges at both ends');
        assert.deepEqual(await p.stillHeld(), []);
        // The session id (the first exchange hash) is kept: every exchange after the first derives its keys with it.
        for (const s of p.sessionIds) assert.deepEqual(s.id, p.sessionIds[0]!.id);
      } finally {
        await p.close();
      }
    });
  }

  it('says which internal is missing when ssh2 changed', () => {
    const conn = Object.assign(new EventEmitter(), { _protocol: { _handlers: {}, _kex: { type: '25519', _keys: {}, finish() {} } as object } });
    forgetKeyExchangeSecrets(conn as unknown as Connection);
    assert.throws(() => conn.emit('handshake'), /ssh2 internals changed: Protocol._kex is not a finished key exchange/);
    conn._protocol._kex = { type: '25519', _finished: true, finish() {} };
    assert.throws(() => conn.emit('handshake'), /ssh2 internals changed: Curve25519Exchange._keys missing/);
  });
});
