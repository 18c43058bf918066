/**
 * What the relay offers in its KEXINIT is exactly node/ssh-algorithms.ts, and a real OpenSSH
 * client forcing each offered key exchange, cipher and MAC in turn connects and moves data
 * byte-exactly, re-keying mid-transfer with each key exchange. What it no longer offers (group exchange, NIST curves, SHA-1, plain zlib) is
 * refused at negotiation, and `server-sig-algs` arrives well formed (issue 8).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Duplex } from 'node:stream';
import { CIPHERS, COMPRESSION, KEX, MACS, SERVER_SIG_ALGS } from '../../node/ssh-algorithms.js';
import { originalX25519Methods } from '../../node/ssh2-internals.js';
import { mintLease, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, streamHash, writeCert, type ClientFiles, type Proc } from '../node/ssh-tools.js';

const SIZE = 1024 * 1024;
const NAME = 'hostx-algos';

describe('OpenSSH client against every algorithm the relay offers', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let y: ClientFiles;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    service = await startHashService(SIZE);
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' })).certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    await online;
    y = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yuser', ttlSeconds: 3600 })).certificate);
  });

  after(async () => {
    killAll();
    service.server.close();
    await relay.stop();
    await fc.stop();
  });

  /** `ssh -vv -W` with `options`, one transfer of SIZE each way; resolves with ssh's stderr. */
  async function transferWith(options: string[]): Promise<string> {
    const opts = options.flatMap((o) => ['-o', o]);
    const p: Proc = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-vv', ...opts, '-W', `${NAME}:22`] }));
    const r = await exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), SIZE);
    assert.equal(await p.exited, 0, p.stderr());
    assert.equal(r.echoedHash, r.sentHash, `${options.join(' ')}: X received exactly what Y sent\n${p.stderr()}`);
    assert.equal(r.replyHash, streamHash(SIZE), `${options.join(' ')}: Y received exactly what X sent`);
    return p.stderr();
  }

  /** The relay's KEXINIT as ssh -vv prints it ("debug2: ciphers stoc: a,b"). */
  function peerProposal(stderr: string): Record<string, string[]> {
    const from = stderr.indexOf('peer server KEXINIT proposal');
    assert.ok(from >= 0, stderr);
    const out: Record<string, string[]> = {};
    for (const line of stderr.slice(from).split('\n').slice(1, 13)) {
      const m = /^debug2: ([^:]+): ?(.*)$/.exec(line.trim());
      if (m) out[m[1]!] = m[2]! === '' ? [] : m[2]!.split(',');
    }
    return out;
  }

  it('offers exactly the documented lists, and server-sig-algs is well formed', async () => {
    const stderr = await transferWith([]);
    const offer = peerProposal(stderr);
    assert.deepEqual(offer['KEX algorithms'], [...KEX, 'kex-strict-s-v00@openssh.com']);
    assert.deepEqual(offer['host key algorithms'], ['ssh-ed25519']);
    assert.deepEqual(offer['ciphers ctos'], [...CIPHERS]);
    assert.deepEqual(offer['ciphers stoc'], [...CIPHERS]);
    assert.deepEqual(offer['MACs ctos'], [...MACS]);
    assert.deepEqual(offer['MACs stoc'], [...MACS]);
    assert.deepEqual(offer['compression ctos'], [...COMPRESSION]);
    assert.deepEqual(offer['compression stoc'], [...COMPRESSION]);
    // ssh2 1.17 alone sends "...ecdsa-sha2-nistp521rsa-sha2-512..." (a missing comma).
    assert.match(stderr, new RegExp(`kex_input_ext_info: server-sig-algs=<${SERVER_SIG_ALGS.join(',')}>`));
    assert.equal(stderr.match(/SSH2_MSG_EXT_INFO received/g)?.length, 1, 'exactly one EXT_INFO');
  });

  for (const kex of KEX) {
    it(`key exchange ${kex}`, async () => {
      const stderr = await transferWith([`KexAlgorithms=${kex}`]);
      assert.match(stderr, new RegExp(`kex: algorithm: ${kex.replace(/[.]/g, '\\.')}\\b`));
    });
  }

  // Each exchange's key pair and shared secret are dropped once it is over (node/ssh2-internals/
  // key-exchange-secrets.ts); what a re-key needs of the one before (its session id) is kept.
  // curve25519's key conversions are the relay's own once a connection was ready (X's, in
  // before: node/ssh2-internals/x25519-exchange.ts), so these clients' exchanges go through them.
  for (const kex of KEX) {
    // Bounded: a re-key that goes wrong leaves the transfer waiting, not failing.
    it(`re-keys mid-transfer with ${kex} (RekeyLimit), byte-exactly`, { timeout: 60_000 }, async () => {
      if (kex.startsWith('curve25519')) assert.ok(originalX25519Methods, "X's connection installed the relay's curve25519 conversions");
      const stderr = await transferWith([`KexAlgorithms=${kex}`, 'RekeyLimit=256K']);
      const exchanges = stderr.match(/SSH2_MSG_NEWKEYS received/g)?.length ?? 0;
      assert.ok(exchanges >= 4, `${exchanges} key exchanges\n${stderr}`);
    });
  }

  for (const cipher of CIPHERS) {
    it(`cipher ${cipher}`, async () => {
      const stderr = await transferWith([`Ciphers=${cipher}`]);
      assert.match(stderr, new RegExp(`kex: client->server cipher: ${cipher.replace(/[.]/g, '\\.')} `));
      assert.match(stderr, new RegExp(`kex: server->client cipher: ${cipher.replace(/[.]/g, '\\.')} `));
    });
  }

  for (const mac of MACS) {
    it(`MAC ${mac} (with aes128-ctr)`, async () => {
      const stderr = await transferWith(['Ciphers=aes128-ctr', `MACs=${mac}`]);
      assert.match(stderr, new RegExp(`kex: client->server cipher: aes128-ctr MAC: ${mac.replace(/[.]/g, '\\.')} `));
    });
  }

  it('a client asking for compression (ssh -C) connects uncompressed', async () => {
    const stderr = await transferWith(['Compression=yes']);
    assert.match(stderr, /kex: client->server cipher: \S+ MAC: \S+ compression: none/);
  });

  for (const [option, what] of [
    ['KexAlgorithms=diffie-hellman-group-exchange-sha256', /no matching key exchange method found/],
    ['KexAlgorithms=ecdh-sha2-nistp256', /no matching key exchange method found/],
    ['KexAlgorithms=diffie-hellman-group18-sha512', /no matching key exchange method found/],
    ['MACs=hmac-sha1', /no matching MAC found/],
    ['MACs=hmac-sha2-256', /no matching MAC found/],
  ] as const) {
    it(`${option} is not offered: the client stops at negotiation`, async () => {
      const p = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-o', option, '-o', 'Ciphers=aes128-ctr', '-W', `${NAME}:22`] }));
      p.child.stdin!.end();
      assert.equal(await p.exited, 255, p.stderr());
      assert.match(p.stderr(), what);
    });
  }
});
