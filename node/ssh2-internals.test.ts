/**
 * The protocol fixes in ssh2-internals.ts, on stand-ins for ssh2's connection internals (the
 * real clients that needed them are in test/interop: plink.test.ts, openssh-algorithms.test.ts).
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { SshReader } from '../protocol/ssh-wire.js';
import { dropRequestsAfterClose, hostKeyWithKeyObject, sendServerSigAlgs } from './ssh2-internals.js';

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
