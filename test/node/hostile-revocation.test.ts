/**
 * Hostile members (h-front): a lease revoked while its connection is up ends that connection at
 * once, even when the peer ignores the relay's DISCONNECT and keeps its socket open. The relay
 * used to send DISCONNECT, half-close, and go on reading the peer for the 2 s before it destroyed
 * the socket: the bridged channels kept carrying what the revoked peer sent, and a revoked Y could
 * still open channels to the exposure. In-process relay against the fake control plane; X and Y
 * are ssh2 clients with certificates (the CLI's own client code).
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import type { Client } from 'ssh2';
import { buildJwks } from '../../control/ca/lease-issuer.js';
import type { SigningKey } from '../../control/keys/key-store.js';
import { signingKey, type Grant } from '../harness/relay.js';
import { ignoreEverything, openDirect } from './hostile-clients.js';
import { relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

const NAME = 'hostx-revoke';

interface XEnd {
  client: Client;
  leaseId: string;
  /** Every forwarded channel X accepted, with what it received. */
  channels: { got: string; closed: Promise<void>; ch: Duplex }[];
  /** Resolves on the next forwarded channel. */
  next(): Promise<XEnd['channels'][number]>;
}

describe('hostile: revocation of a connection whose peer ignores DISCONNECT', { timeout: 120_000 }, () => {
  const t = relayUnderTest();
  const member = (user: string, grant: Grant) => t.member(user, { grant });

  async function exposer(exposure: string): Promise<XEnd & { exp: number }> {
    const m = await member(`x-${exposure}`, { kind: 'expose', exposure, port: 22 });
    const channels: XEnd['channels'] = [];
    const waiters: ((c: XEnd['channels'][number]) => void)[] = [];
    m.client.on('tcp connection', (_info, accept) => {
      const ch = accept();
      const entry = { got: '', ch, closed: new Promise<void>((r) => ch.once('close', () => r())) };
      ch.on('data', (d: Buffer) => (entry.got += d.toString()));
      channels.push(entry);
      waiters.shift()?.(entry);
    });
    await new Promise<void>((resolve, reject) => m.client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
    return { ...m, channels, next: () => new Promise((r) => waiters.push(r)) };
  }

  async function revoke(leaseId: string, exp: number): Promise<void> {
    const from = t.relay.logger.lines.length;
    t.fc.revoke(leaseId, exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.reason === 'lease_revoked' && l.fields.leaseId === leaseId, 10_000, from);
  }

  const closedFor = (leaseId: string, from: number) =>
    t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === leaseId, 10_000, from);

  it("a revoked Y's channel carries nothing it sends after the revocation, and it opens no new channel", async () => {
    const x = await exposer(NAME);
    const y = await member('yrevoked', { kind: 'open', exposure: NAME });
    const firstAtX = x.next();
    const ch = await openDirect(y.client, NAME, 22);
    ch.write('before;');
    const xch = await firstAtX;
    while (!xch.got.includes('before;')) await new Promise((r) => xch.ch.once('data', r));

    // Y stops reading: it never sees the DISCONNECT and keeps its socket open.
    ignoreEverything(y.client);
    const from = t.relay.logger.lines.length;
    await revoke(y.leaseId, y.exp);
    ch.write('after-revocation;');
    y.client.forwardOut('127.0.0.1', 40001, NAME, 22, () => {});
    await closedFor(y.leaseId, from);
    await xch.closed;
    assert.equal(xch.got, 'before;', 'the bridge carried data the revoked Y sent after its revocation');
    assert.equal(x.channels.length, 1, 'the revoked Y opened a channel to the exposure');
  });

  it("a revoked egress lease's channel carries nothing its Y sends after the revocation", async () => {
    let got = '';
    let gotClose!: () => void;
    let gotBefore!: () => void;
    const targetClosed = new Promise<void>((r) => (gotClose = r));
    const before = new Promise<void>((r) => (gotBefore = r));
    const target = createServer((s) => {
      s.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('before;')) gotBefore();
      });
      s.on('close', () => gotClose());
      s.on('error', () => {});
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    const port = (target.address() as AddressInfo).port;
    try {
      const y = await member('yegress', { kind: 'egress', targets: [{ host: '127.0.0.1', port }] });
      const ch = await openDirect(y.client, '127.0.0.1', port);
      ch.write('before;');
      await before;
      ignoreEverything(y.client);
      const from = t.relay.logger.lines.length;
      await revoke(y.leaseId, y.exp);
      ch.write('after-revocation;');
      await closedFor(y.leaseId, from);
      await targetClosed;
      assert.equal(got, 'before;', 'the egress socket carried data the revoked Y sent after its revocation');
    } finally {
      target.close();
    }
  });

  it("a revoked X's forwarded channel carries nothing X sends after the revocation", async () => {
    const x = await exposer(`${NAME}-x`);
    const y = await member('yreader', { kind: 'open', exposure: `${NAME}-x` });
    const atX = x.next();
    const ch = await openDirect(y.client, `${NAME}-x`, 22);
    let got = '';
    ch.on('data', (d: Buffer) => (got += d.toString()));
    const yClosed = new Promise<void>((r) => ch.once('close', () => r()));
    const xch = await atX;
    xch.ch.write('before;');
    while (!got.includes('before;')) await new Promise((r) => ch.once('data', r));

    ignoreEverything(x.client);
    const from = t.relay.logger.lines.length;
    await revoke(x.leaseId, x.exp);
    xch.ch.write('after-revocation;');
    await closedFor(x.leaseId, from);
    await yClosed;
    assert.equal(got, 'before;', "the bridge carried data the revoked X sent after its revocation");
  });
});

describe('hostile: a key withdrawn from the JWKS closes the connections it let in', { timeout: 120_000 }, () => {
  // A refresh on every unknown key id: the test's second member brings one.
  const t = relayUnderTest(['--jwks-min-refresh-interval', '0ms']);
  const connect = (user: string, keys: { lease: SigningKey; ca: SigningKey }) => t.member(user, { keys });

  /** The control plane publishes `keys` only (the others withdrawn). */
  function publish(keys: { lease: SigningKey[]; ca: SigningKey[] }): void {
    t.fc.jwks = buildJwks([...keys.lease.map((k) => ({ kid: k.kid, publicKey: k.publicKey, use: 'sig' as const })), ...keys.ca.map((k) => ({ kid: k.kid, publicKey: k.publicKey, use: 'ssh-ca' as const }))]);
  }

  it('a lease key, then a CA key: their connections close when the relay learns the new JWKS; the others stay', async () => {
    const first = t.fc.keys;
    const lease2 = signingKey('lease-2');
    const ca2 = signingKey('ca-2');
    const old = await connect('signed-by-lease-1', first);
    const from = t.relay.logger.lines.length;

    // lease-1 withdrawn (say it leaked); a member with a lease of lease-2 makes the relay refresh.
    publish({ lease: [lease2], ca: [first.ca] });
    const fresh = await connect('signed-by-lease-2', { lease: lease2, ca: first.ca });
    await within(old.closed, 10_000, 'the connection of the withdrawn lease key closed');
    const line = await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === old.leaseId, 10_000, from);
    assert.equal(line.fields.reason, 'lease_untrusted');
    await assert.rejects(connect('signed-by-lease-1-again', first), 'a new connection with the withdrawn key');

    // Then ca-1 withdrawn: the connection with a ca-1 certificate closes, one with ca-2 comes in.
    publish({ lease: [lease2], ca: [ca2] });
    await connect('ca-2', { lease: lease2, ca: ca2 });
    await within(fresh.closed, 10_000, 'the connection of the withdrawn CA key closed');
    const caLine = await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === fresh.leaseId, 10_000, from);
    assert.equal(caLine.fields.reason, 'lease_untrusted');
    const m = t.relay.relay.metricsText();
    assert.match(m, /tunnel_node_lease_closures_total\{reason="lease_untrusted"\} 2/);
  });

  it('a JWKS that can verify nothing (no keys, or no CA key) withdraws nothing: the last good one stays', async () => {
    const keys = { lease: signingKey('lease-3'), ca: signingKey('ca-3') };
    publish({ lease: [keys.lease], ca: [keys.ca] });
    const kept = await connect('kept', keys);
    const closedLines = (from: number) => t.relay.logger.lines.slice(from).filter((l) => l.msg === 'closing connection' && l.fields.leaseId === kept.leaseId);
    for (const doc of [{ keys: [] }, buildJwks([{ kid: keys.lease.kid, publicKey: keys.lease.publicKey, use: 'sig' }])]) {
      const from = t.relay.logger.lines.length;
      t.fc.jwks = doc;
      // A lease of a key the relay does not know makes it refresh.
      await assert.rejects(connect('unknown-key', { lease: signingKey(`lease-x${from}`), ca: keys.ca }));
      await t.relay.logger.waitFor((l) => l.msg.startsWith('jwks refresh refused'), 10_000, from);
      assert.deepEqual(closedLines(from), [], 'the connection was closed');
      assert.equal(t.relay.relay.health().ok, true);
      await connect('still-trusted', keys);
    }
    const h = t.relay.relay.health() as unknown as { jwks: { keys: number; lastError: string | null } };
    assert.equal(h.jwks.keys, 2);
    assert.equal(h.jwks.lastError, 'JWKS_UNUSABLE');
  });
});
