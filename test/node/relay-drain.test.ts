/**
 * Graceful shutdown of the real `tunnel-node` binary on SIGTERM: it stops accepting new
 * connections and channels at once, reports "draining" on /healthz, lets a live channel finish,
 * sends its connection events, and exits 0; a channel that outlives --drain-timeout is cut.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { fetch } from 'undici';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';
import { mintLease, startFakeControl, type FakeControl, type Grant } from '../harness/relay.js';
import { startRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { connectWithCertificate } from './ssh2-cert-client.js';
import { within } from './ssh-tools.js';

const NAME = 'hostx-drain';

interface Started {
  relay: RelayProcess;
  hostKeyLine: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Writes `text` and resolves once the echo of it arrived. */
function roundTrip(ch: ClientChannel, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const on = (d: Buffer) => {
      got += d.toString();
      if (got.includes(text)) {
        ch.off('data', on);
        resolve();
      }
    };
    ch.on('data', on);
    ch.once('error', reject);
    ch.write(text);
  });
}

function openChannel(y: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => y.forwardOut('127.0.0.1', 40000, NAME, 22, (err, ch) => (err ? reject(err) : resolve(ch))));
}

/**
 * Connects to `port` and resolves once the socket is gone: with what the server sent (an SSH
 * server sends its banner first) and whether the connect itself was refused.
 */
function probe(port: number): Promise<{ refused: boolean; received: string }> {
  return new Promise((resolve) => {
    let received = '';
    let refused = false;
    const s = connect({ host: '127.0.0.1', port });
    s.on('data', (d: Buffer) => {
      received += d.toString();
      s.destroy();
    });
    s.once('error', (err: NodeJS.ErrnoException) => (refused = err.code === 'ECONNREFUSED'));
    s.once('close', () => resolve({ refused, received }));
  });
}

type Line = { msg?: string } & Record<string, unknown>;
const logLines = (stderr: string): Line[] =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

describe('tunnel-node graceful shutdown on SIGTERM', () => {
  let fc: FakeControl;
  const clients: Client[] = [];
  const relays: RelayProcess[] = [];

  before(async () => {
    fc = await startFakeControl();
  });

  after(async () => {
    for (const c of clients) c.destroy();
    for (const r of relays) {
      r.child.kill('SIGKILL');
      r.cleanup();
    }
    await fc?.stop();
  });

  async function start(drainTimeout: string, args: string[] = []): Promise<Started> {
    const relay = await startRelayProcess({
      controlUrl: fc.url,
      enrollToken: fc.enrollToken,
      args: ['--drain-timeout', drainTimeout, '--events-flush-interval', '100ms', ...args],
    });
    relays.push(relay);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      relay.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const { publicKeyLine } = await loadOrCreateHostKey(relay.dataDir, noopLogger);
    return { relay, hostKeyLine: publicKeyLine, exit };
  }

  async function client(s: Started, user: string, grant: Grant): Promise<{ client: Client; leaseId: string }> {
    const { privateKey } = generateKeyPairSync('ed25519');
    const lease = await mintLease(fc, { grant, clientPublicKey: privateKey, user });
    const c = await connectWithCertificate({ port: s.relay.sshPort, username: user, privateKey, certificate: lease.certificate, hostKeyLine: s.hostKeyLine });
    clients.push(c);
    return { client: c, leaseId: lease.claims.jti };
  }

  /** X: an echo service behind `NAME:22` (EOF answered with EOF). */
  async function exposeEcho(s: Started): Promise<{ client: Client; leaseId: string }> {
    const x = await client(s, 'xowner', { kind: 'expose', exposure: NAME, port: 22 });
    x.client.on('tcp connection', (_info, accept) => {
      const ch = accept();
      ch.on('data', (d: Buffer) => ch.write(d));
      ch.on('end', () => ch.end());
    });
    await new Promise<void>((resolve, reject) => x.client.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    return x;
  }

  it('stops accepting, lets a live channel finish, reports its connections and exits 0', async () => {
    const s = await start('30s');
    const x = await exposeEcho(s);
    const y = await client(s, 'yuser', { kind: 'open', exposure: NAME });
    const ch = await openChannel(y.client);
    await roundTrip(ch, 'before;');
    const xClosed = new Promise<void>((r) => x.client.once('close', () => r()));

    const from = s.relay.stderr().length;
    s.relay.child.kill('SIGTERM');
    await s.relay.waitForStderr(/"msg":"relay draining"/, from);

    // The log line is written just before the listener closes, so a connection racing it may
    // still complete the TCP handshake in the backlog; it must never get an SSH banner, and once
    // it is gone the port is closed.
    const first = await within(probe(s.relay.sshPort), 5000, 'first probe');
    assert.equal(first.received, '', 'a new connection was served while draining');
    assert.deepEqual(await within(probe(s.relay.sshPort), 5000, 'second probe'), { refused: true, received: '' });
    const health = await fetch(`http://127.0.0.1:${s.relay.metricsPort}/healthz`);
    assert.equal(health.status, 503);
    assert.equal(((await health.json()) as { status: string }).status, 'draining');
    await assert.rejects(openChannel(y.client), 'a new channel was opened while draining');

    // The live channel still carries data both ways, then finishes on its own.
    await roundTrip(ch, 'during;');
    const ended = new Promise<void>((r) => ch.once('close', () => r()));
    ch.end();
    await within(ended, 5000, 'channel finished');

    // Exiting well before the 30 s deadline shows the relay waited for the channel, not the clock.
    const exit = await within(s.exit, 10_000, 'relay exited after its last channel finished');
    assert.deepEqual(exit, { code: 0, signal: null }, s.relay.stderr().slice(from));
    await within(xClosed, 5000, "X's connection closed");

    const lines = logLines(s.relay.stderr().slice(from));
    const stopped = lines.find((l) => l.msg === 'relay stopped');
    assert.ok(stopped, 'no "relay stopped" line');
    assert.equal(stopped.channelsCutAtDeadline, 0);
    assert.equal(stopped.eventsDropped, 0);
    const refused = lines.find((l) => l.msg === 'request refused' && l.reason === 'draining');
    assert.ok(refused, 'the channel opened while draining was not refused for draining');

    const closes = fc.events.filter((e) => e.type === 'conn_close');
    const yClose = closes.find((e) => e.lease_id === y.leaseId);
    assert.ok(yClose, "no conn_close for Y's connection reached the control plane");
    assert.equal(yClose.bytes_in, 'before;during;'.length);
    assert.equal(yClose.bytes_out, 'before;during;'.length);
    assert.ok(closes.some((e) => e.lease_id === x.leaseId), "no conn_close for X's connection");
    assert.ok(fc.events.some((e) => e.type === 'exposure_offline' && e.exposure === NAME), 'no exposure_offline event');
  });

  it('cuts a channel that outlives --drain-timeout and still exits 0', async () => {
    const s = await start('1s');
    await exposeEcho(s);
    const y = await client(s, 'ylinger', { kind: 'open', exposure: NAME });
    const ch = await openChannel(y.client);
    await roundTrip(ch, 'hello;');
    const cut = new Promise<void>((r) => ch.once('close', () => r()));

    const from = s.relay.stderr().length;
    s.relay.child.kill('SIGTERM');
    const exit = await within(s.exit, 15_000, 'relay exited after the drain deadline');
    assert.deepEqual(exit, { code: 0, signal: null }, s.relay.stderr().slice(from));
    await within(cut, 5000, 'lingering channel closed');
    const stopped = logLines(s.relay.stderr().slice(from)).find((l) => l.msg === 'relay stopped');
    assert.ok(stopped, 'no "relay stopped" line');
    assert.ok(Number(stopped.channelsCutAtDeadline) > 0, JSON.stringify(stopped));
  });

  it('exits on SIGTERM while the control plane answers no heartbeat', async () => {
    // Unanswered, each heartbeat takes the control client's 10 s timeout. They used to queue up
    // behind one another (one per --heartbeat-interval), and the final event flush at shutdown
    // waited for every one of them: the relay did not exit until the control plane answered.
    const release = fc.holdHeartbeats();
    try {
      const s = await start('1s', ['--heartbeat-interval', '100ms']);
      // The first heartbeat timed out: a hundred intervals have passed since it was sent.
      await s.relay.waitForStderr(/"msg":"heartbeat failed"/, 0, 30_000);
      const from = s.relay.stderr().length;
      s.relay.child.kill('SIGTERM');
      // At most one heartbeat left to time out, then the (empty) final flush.
      const exit = await within(s.exit, 40_000, 'relay exited on SIGTERM with its heartbeats unanswered');
      assert.deepEqual(exit, { code: 0, signal: null }, s.relay.stderr().slice(from));
      assert.ok(
        logLines(s.relay.stderr().slice(from)).some((l) => l.msg === 'relay stopped'),
        'no "relay stopped" line',
      );
    } finally {
      release();
    }
  });
});
