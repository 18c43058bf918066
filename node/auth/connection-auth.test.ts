import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import type { AuthContext } from 'ssh2';
import { buildJwks, issueLease } from '../../control/ca/lease-issuer.js';
import { CERT_KEY_TYPE } from '../../protocol/ssh-cert.js';
import { encodeSignatureBlob, rawPublicKey } from '../../protocol/ssh-key.js';
import { noopLogger } from '../../shared/logger.js';
import { JwksCache } from '../trust/jwks-cache.js';
import { createAuthenticator } from './authenticate.js';
import { ConnectionAuth, type ConnectionAuthOptions } from './connection-auth.js';
import { PerMemberLimit } from '../per-member-limit.js';

/**
 * A client asks whether its key would do (publickey without a signature), then signs: the
 * signed attempt with the same key takes the lease the query verified, checked again without
 * the signatures (trust, revocation, expiry). Everything that changed in between still refuses.
 */
const key = (kid: string) => ({ kid, ...generateKeyPairSync('ed25519') });
const leaseKey = key('l1');
const client = generateKeyPairSync('ed25519');
const T0 = new Date('2030-06-01T12:00:00Z').getTime();
const file = `/tmp/jwks-connection-auth-${process.pid}.json`;
after(() => rmSync(file, { force: true }));

async function setup() {
  const state = { now: T0, ca: key('c1'), revoked: new Set<string>(), verifies: 0, accepted: 0, refused: [] as string[], ended: [] as string[] };
  /** Whose each refusal's event is (ConnectionAuthOptions.event), and what the lease registry answers. */
  const events = { members: [] as (string | undefined)[], attach: { ok: true } as { ok: boolean; reason?: string } };
  const clock = { now: () => new Date(state.now) };
  const trust = new JwksCache({
    client: {
      fetchJwks: async () =>
        buildJwks([
          { kid: 'l1', publicKey: leaseKey.publicKey, use: 'sig' },
          { kid: state.ca.kid, publicKey: state.ca.publicKey, use: 'ssh-ca' },
        ]),
    },
    file,
    clock,
    logger: noopLogger,
    refreshMs: 1e9,
    minRefreshMs: 0,
  });
  await trust.init();
  const real = createAuthenticator({ clock, trust, identity: { nodeId: 'node_1', issuer: 'https://control' }, isRevoked: (id) => state.revoked.has(id) });
  const auth: typeof real = {
    verify: (k, o) => {
      state.verifies++;
      return real.verify(k, o);
    },
    stillValid: (lease) => real.stillValid(lease),
  };
  const ctx = {
    config: { limits: { authAttempts: 100 } },
    metrics: { authFailures: { inc: () => undefined } },
    auth,
    rateLimiter: { recordFailure: () => undefined },
    registry: { attach: () => events.attach },
    memberConnections: new PerMemberLimit(100),
  } as unknown as ConnectionAuthOptions['ctx'];
  const conn = new ConnectionAuth({
    ctx,
    sessionId: 's1',
    ip: '127.0.0.1',
    log: noopLogger,
    ending: () => false,
    closed: () => false,
    inject: () => undefined,
    event: (e, member) => {
      state.refused.push(String((e as { reason?: string }).reason));
      events.members.push(member);
    },
    end: (r) => state.ended.push(r),
    leaseEnd: () => true,
    setLease: () => undefined,
  });
  const certificate = async (o: { leaseId?: string; name?: string; minutes?: number } = {}) =>
    (
      await issueLease(
        { lease: leaseKey, ca: state.ca },
        {
          issuer: 'https://control',
          leaseId: o.leaseId ?? 'lease_1',
          serial: 7n,
          userId: 'usr_1',
          userName: o.name ?? 'alice',
          nodeId: 'node_1',
          grant: { kind: 'open', exposure: 'svc' },
          clientPublicKey: rawPublicKey(client.publicKey),
          notBefore: new Date(T0 - 60_000),
          expiresAt: new Date(T0 + (o.minutes ?? 10) * 60_000),
        },
      )
    ).certificate;
  /** One publickey attempt as ssh2 hands it over; resolves to 'accepted' or 'refused'. */
  const attempt = async (blob: Buffer, o: { signed?: boolean; user?: string; signer?: KeyObject } = {}) => {
    let answer = 'none';
    const data = Buffer.from('session id and request');
    const actx = {
      method: 'publickey',
      username: o.user ?? 'alice',
      key: { algo: CERT_KEY_TYPE, data: blob },
      signature: o.signed ? encodeSignatureBlob(sign(null, data, o.signer ?? client.privateKey)) : undefined,
      blob: o.signed ? data : undefined,
      accept: () => (answer = 'accepted'),
      reject: () => (answer = 'refused'),
    } as unknown as AuthContext;
    await conn.authenticate(actx);
    return answer;
  };
  /** A `none` attempt (the client's first: free, answered with the methods). */
  const none = async () => {
    let answer = 'none';
    const actx = { method: 'none', username: 'alice', accept: () => (answer = 'accepted'), reject: () => (answer = 'refused') } as unknown as AuthContext;
    await conn.authenticate(actx);
    return answer;
  };
  return { state, events, trust, certificate, attempt, none };
}

describe('ConnectionAuth: a query, then the signed attempt', () => {
  it('verifies the certificate once when the signed attempt repeats the queried key', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await attempt(Buffer.from(cert), { signed: true }), 'accepted');
    assert.equal(state.verifies, 1);
  });

  it('still checks the signature of the signed attempt', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await attempt(cert, { signed: true, signer: generateKeyPairSync('ed25519').privateKey }), 'refused');
    assert.deepEqual(state.refused, ['signature_invalid']);
  });

  it('verifies afresh when the lease was revoked after the query', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    state.revoked.add('lease_1');
    assert.equal(await attempt(cert, { signed: true }), 'refused');
    assert.deepEqual(state.refused, ['lease_revoked']);
    assert.equal(state.verifies, 2);
  });

  it('verifies afresh when the lease expired after the query', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate({ minutes: 1 });
    assert.equal(await attempt(cert), 'accepted');
    state.now = T0 + 60_000;
    assert.equal(await attempt(cert, { signed: true }), 'refused');
    assert.equal(state.refused.length, 1);
    assert.match(state.refused[0] as string, /expired/);
  });

  it('verifies afresh when the CA that signed it left the trust document after the query', async () => {
    const { state, trust, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    state.ca = key('c2');
    assert.equal(await trust.refresh(), true);
    assert.equal(await attempt(cert, { signed: true }), 'refused');
    assert.deepEqual(state.refused, ['ca_untrusted']);
  });

  it('verifies afresh for another key, another user, or bytes changed after the query', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate();
    const other = await certificate({ leaseId: 'lease_2' });
    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await attempt(other, { signed: true }), 'accepted');
    assert.equal(state.verifies, 2);

    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await attempt(cert, { signed: true, user: 'mallory' }), 'refused');
    assert.deepEqual(state.refused, ['principal_mismatch']);
    assert.equal(state.verifies, 4);

    // ssh2's key blob is a view of its packet: the query's copy is what counts.
    const view = Buffer.from(cert);
    assert.equal(await attempt(view), 'accepted');
    view[view.length - 1] = (view[view.length - 1] as number) ^ 1;
    assert.equal(await attempt(view, { signed: true }), 'refused');
    assert.deepEqual(state.refused, ['principal_mismatch', 'ca_signature_invalid']);
    assert.equal(state.verifies, 6);
  });

  it('a query answers only the next attempt, whatever its method', async () => {
    const { state, certificate, attempt, none } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await none(), 'refused');
    assert.equal(await attempt(cert, { signed: true }), 'accepted');
    assert.equal(state.verifies, 2);
  });

  it('a query answers only the next attempt', async () => {
    const { state, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert), 'accepted');
    assert.equal(await attempt(cert, { signed: true, user: 'mallory' }), 'refused');
    assert.equal(await attempt(cert, { signed: true }), 'accepted');
    assert.equal(state.verifies, 3);
  });

  it('a valid lease refused for capacity is reported as its member\'s event; a bad signature as no member\'s', async () => {
    const { state, events, certificate, attempt } = await setup();
    const cert = await certificate();
    assert.equal(await attempt(cert, { signed: true, signer: generateKeyPairSync('ed25519').privateKey }), 'refused');
    events.attach = { ok: false, reason: 'too_many_connections' };
    assert.equal(await attempt(cert, { signed: true }), 'refused');
    assert.deepEqual(state.refused, ['signature_invalid', 'too_many_connections']);
    assert.deepEqual(events.members, [undefined, 'usr_1']);
  });
});
