/**
 * Hostile clients against the signed attempt that takes its query's lease (node/auth/
 * connection-auth.ts): a real in-process relay, ssh2 clients that drive USERAUTH_REQUESTs one by
 * one through ssh2's protocol object. Whatever is queried first, the signed attempt still needs a
 * valid signature by the key it names over this session, and gets that key's lease only.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { Client, type ParsedKey } from 'ssh2';
import { certIdentity } from '../../cli/ssh/ssh2-cert-auth.js';
import { parseKeyLine } from '../../protocol/ssh-key.js';
import { mintLease } from '../harness/relay.js';
import { relayUnderTest } from './relay-under-test.js';

type Reply = 'pk_ok' | 'failure' | 'success' | 'closed';

interface AuthProtocol {
  _handlers: Record<string, (...args: unknown[]) => void>;
  _kex: { sessionID: Buffer };
  authPK(username: string, key: ParsedKey, algoOrCb?: unknown, cb?: unknown): void;
  authNone(username: string): void;
}

/** A connection whose USERAUTH_REQUESTs the test sends itself, one reply at a time. */
async function rawAuth(port: number, hostKeyLine: string, user: string) {
  const client = new Client();
  client.on('error', () => {});
  const hostBlob = parseKeyLine(hostKeyLine).blob;
  const replies: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  const push = (r: Reply) => {
    const w = waiters.shift();
    if (w) w(r);
    else replies.push(r);
  };
  const serviceAccepted = new Promise<void>((resolve, reject) => {
    client.connect({ host: '127.0.0.1', port, username: user, hostVerifier: (k: Buffer) => k.equals(hostBlob), authHandler: () => {}, readyTimeout: 30_000 });
    const proto = (client as unknown as { _protocol: AuthProtocol })._protocol;
    proto._handlers.SERVICE_ACCEPT = () => resolve();
    proto._handlers.USERAUTH_PK_OK = () => push('pk_ok');
    proto._handlers.USERAUTH_FAILURE = () => push('failure');
    proto._handlers.USERAUTH_SUCCESS = () => push('success');
    client.once('close', () => {
      reject(new Error('closed before SERVICE_ACCEPT'));
      push('closed');
    });
  });
  await serviceAccepted;
  const proto = (client as unknown as { _protocol: AuthProtocol })._protocol;
  const next = (): Promise<Reply> => {
    const r = replies.shift();
    return r ? Promise.resolve(r) : new Promise((resolve) => waiters.push(resolve));
  };
  return {
    client,
    proto,
    next,
    query(privateKey: KeyObject, certificate: Buffer): Promise<Reply> {
      proto.authPK(user, certIdentity(privateKey, certificate));
      return next();
    },
    /** A signed attempt for `certificate`, signed by `signer` over `tamper(data)`. */
    signed(certificate: Buffer, signer: KeyObject, tamper: (data: Buffer) => Buffer = (d) => d, algo?: string): Promise<Reply> {
      const id = certIdentity(signer, certificate);
      const cb = (data: Buffer, done: (s: Buffer) => void) => done(sign(null, tamper(data), signer));
      if (algo) proto.authPK(user, id, algo, cb);
      else proto.authPK(user, id, cb);
      return next();
    },
  };
}

describe('hostile: a publickey query, then a signed attempt that differs', { timeout: 120_000 }, () => {
  const t = relayUnderTest();

  async function lease(user: string) {
    const { privateKey } = generateKeyPairSync('ed25519');
    const l = await mintLease(t.fc, { grant: { kind: 'open', exposure: 'anything' }, clientPublicKey: privateKey, user });
    return { privateKey, certificate: l.certificate, leaseId: l.claims.jti, exp: l.claims.exp };
  }
  const refusals = (from: number) => t.relay.logger.lines.slice(from).filter((l) => l.msg === 'authentication refused').map((l) => String(l.fields.reason));
  const authenticated = (from: number) => t.relay.logger.lines.slice(from).filter((l) => l.msg === 'connection authenticated');

  it('a signature by another key, or over another session, is refused after an accepted query', async () => {
    const from = t.relay.logger.lines.length;
    const a = await lease('alice');
    const c = t.track((await rawAuth(t.relay.port, t.relay.hostKeyLine, 'alice')).client);
    const r = await rawAuth(t.relay.port, t.relay.hostKeyLine, 'alice');
    t.track(r.client);
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    assert.equal(await r.signed(a.certificate, generateKeyPairSync('ed25519').privateKey), 'failure');
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    // The right key over another session id (a signature replayed from another connection).
    const other = Buffer.from((c as unknown as { _protocol: AuthProtocol })._protocol._kex.sessionID);
    const replay = (d: Buffer) => Buffer.concat([d.subarray(0, 4), other, d.subarray(4 + other.length)]);
    assert.equal(await r.signed(a.certificate, a.privateKey, replay), 'failure');
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    // The right key, the algorithm named differently than in the query.
    assert.equal(await r.signed(a.certificate, a.privateKey, undefined, 'ssh-ed25519'), 'failure');
    assert.deepEqual(refusals(from), ['signature_invalid', 'signature_invalid', 'not_certificate']);
    assert.equal(authenticated(from).length, 0);
    assert.equal(await r.signed(a.certificate, a.privateKey), 'success');
    assert.equal(authenticated(from)[0]?.fields.leaseId, a.leaseId);
  });

  it('query for one certificate, signed attempt with another: the second lease is the one attached', async () => {
    const from = t.relay.logger.lines.length;
    const a = await lease('bob');
    const b = await lease('bob');
    const r = await rawAuth(t.relay.port, t.relay.hostKeyLine, 'bob');
    t.track(r.client);
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    // B's certificate signed with A's key: B's key did not sign.
    assert.equal(await r.signed(b.certificate, a.privateKey), 'failure');
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    assert.equal(await r.signed(b.certificate, b.privateKey), 'success');
    assert.deepEqual(refusals(from), ['signature_invalid']);
    assert.equal(authenticated(from)[0]?.fields.leaseId, b.leaseId);
  });

  it('a lease revoked between the query and the signed attempt is refused', async () => {
    const from = t.relay.logger.lines.length;
    const a = await lease('carol');
    const r = await rawAuth(t.relay.port, t.relay.hostKeyLine, 'carol');
    t.track(r.client);
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    t.fc.revoke(a.leaseId, a.exp);
    await t.relay.relay.pollRevocations();
    assert.equal(await r.signed(a.certificate, a.privateKey), 'failure');
    assert.deepEqual(refusals(from), ['lease_revoked']);
    assert.equal(authenticated(from).length, 0);
  });

  it('a none attempt between the query and the signed attempt changes nothing the signature proves', async () => {
    const from = t.relay.logger.lines.length;
    const a = await lease('dave');
    const r = await rawAuth(t.relay.port, t.relay.hostKeyLine, 'dave');
    t.track(r.client);
    assert.equal(await r.query(a.privateKey, a.certificate), 'pk_ok');
    r.proto.authNone('dave');
    assert.equal(await r.next(), 'failure');
    assert.equal(await r.signed(a.certificate, generateKeyPairSync('ed25519').privateKey), 'failure');
    assert.equal(await r.signed(a.certificate, a.privateKey), 'success');
    assert.deepEqual(refusals(from), ['signature_invalid']);
    assert.equal(authenticated(from)[0]?.fields.leaseId, a.leaseId);
  });
});
