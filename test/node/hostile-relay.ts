/**
 * Fixture for the hostile-client suite (test/node/hostile-*.test.ts): the real `tunnel-node`
 * process against the fake control plane, an X exposing a hash service through it, and a
 * legitimate Y whose transfer must stay byte-exact whatever an attacker does meanwhile.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { fetch } from 'undici';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';
import { mintLease, startFakeControl, type FakeControl, type Grant } from '../harness/relay.js';
import { startRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { parsePrometheusText, type PromText } from './prom-text.js';
import { connectWithCertificate } from './ssh2-cert-client.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, writeCert } from './ssh-tools.js';

export type LogLine = { msg?: string; level?: string; sessionId?: string } & Record<string, unknown>;

export interface HostileRelay {
  fc: FakeControl;
  relay: RelayProcess;
  hostKeyLine: string;
  exposure: string;
  /** A certificate-authenticated ssh2 client (closed by stop()). */
  client(user: string, grant: Grant, o?: { localAddress?: string; ident?: string; port?: number }): Promise<{ client: Client; leaseId: string }>;
  /** Opens a direct-tcpip channel to `host:port` (default: the exposure), rejecting with ssh2's error. */
  openChannel(client: Client, host?: string, port?: number): Promise<ClientChannel>;
  /**
   * Y from 127.0.0.1 (to `port` instead of the relay's, e.g. a delay line in front of it): opens a
   * channel to the exposure and moves `bytes` each way (fewer once `until` settled); asserts both hashes.
   */
  legitTransfer(bytes?: number, o?: { ident?: string; port?: number; until?: Promise<unknown> }): Promise<void>;
  metrics(): Promise<PromText>;
  /** Polls /metrics until `pred` holds (bounded by `ms`; an event the test awaits, not a timing assertion). */
  metricsUntil(pred: (m: PromText) => boolean, what: string, ms?: number): Promise<PromText>;
  /** Relay still running (no crash). */
  alive(): boolean;
  /** A fresh key and a certificate for `grant`, for hand-built (hostile) ssh2 clients. */
  credentials(user: string, grant: Grant): Promise<{ privateKey: KeyObject; certificate: Buffer; port: number; username: string; hostKeyLine: string }>;
  /** Like legitTransfer, with the real OpenSSH client as Y (`ssh -W`). */
  legitOpenSsh(bytes: number): Promise<void>;
  /** Another X, the real OpenSSH client (`ssh -R NAME:22:...`), exposing the local TCP service on `servicePort`. */
  expose(exposure: string, servicePort: number): Promise<void>;
  /** The relay's JSON log lines after stderr offset `from`. */
  logs(from?: number): LogLine[];
  /**
   * Resolves once the relay logged `connection closed` for the first connection of `user`
   * authenticated after stderr offset `from`. A client that stopped reading its socket never
   * sees the close itself, so the relay's word is what tests wait for.
   */
  relayClosed(user: string, from: number, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

const REPLY = 64 * 1024;

export async function startHostileRelay(args: string[] = [], exposure = 'hostile-svc'): Promise<HostileRelay> {
  const fc = await startFakeControl();
  const service = await startHashService(REPLY);
  const relay = await startRelayProcess({ controlUrl: fc.url, enrollToken: fc.enrollToken, args: ['--events-flush-interval', '100ms', ...args] });
  const hostKeyLine = (await loadOrCreateHostKey(relay.dataDir, noopLogger)).publicKeyLine;
  const clients: Client[] = [];

  const client: HostileRelay['client'] = async (user, grant, o = {}) => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const lease = await mintLease(fc, { grant, clientPublicKey: privateKey, user });
    const c = await connectWithCertificate({ port: relay.sshPort, username: user, privateKey, certificate: lease.certificate, hostKeyLine, ...o });
    c.on('error', () => {});
    clients.push(c);
    return { client: c, leaseId: lease.claims.jti };
  };

  // X: every forwarded channel is piped to the hash service.
  const x = await client('xowner', { kind: 'expose', exposure, port: 22 });
  x.client.on('tcp connection', (_info, accept) => {
    const ch = accept();
    const s = connect({ host: '127.0.0.1', port: service.port, allowHalfOpen: true });
    s.on('error', () => ch.destroy());
    ch.on('error', () => s.destroy());
    ch.pipe(s).pipe(ch);
  });
  await new Promise<void>((resolve, reject) => x.client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));

  const logs = (from = 0): LogLine[] =>
    relay
      .stderr()
      .slice(from)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  const metrics = async () => parsePrometheusText(await (await fetch(`http://127.0.0.1:${relay.metricsPort}/metrics`)).text());
  return {
    fc,
    relay,
    hostKeyLine,
    exposure,
    client,
    openChannel: (c, host = exposure, port = 22) =>
      new Promise((resolve, reject) => c.forwardOut('127.0.0.1', 40000, host, port, (err, ch) => (err ? reject(err) : resolve(ch)))),
    async legitTransfer(bytes = 2 << 20, o = {}) {
      const { until, ...connect } = o;
      const y = await client('ylegit', { kind: 'open', exposure }, connect);
      try {
        const ch = await new Promise<Parameters<typeof exchange>[0]>((resolve, reject) =>
          y.client.forwardOut('127.0.0.1', 40000, exposure, 22, (err, c) => (err ? reject(err) : resolve(c as never))),
        );
        const r = await exchange(ch, bytes, until);
        assert.equal(r.echoedHash, r.sentHash, 'what X received differs from what Y sent');
        assert.equal(r.replyBytes, REPLY);
      } finally {
        y.client.end();
      }
    },
    metrics,
    async metricsUntil(pred, what, ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = await metrics();
        if (pred(m)) return m;
        if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    alive: () => relay.child.exitCode === null && relay.child.signalCode === null,
    async credentials(user, grant) {
      const { privateKey } = generateKeyPairSync('ed25519');
      const lease = await mintLease(fc, { grant, clientPublicKey: privateKey, user });
      return { privateKey, certificate: lease.certificate, port: relay.sshPort, username: user, hostKeyLine };
    },
    async legitOpenSsh(bytes) {
      const y = await clientFiles(relay.sshPort, hostKeyLine);
      await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure }, clientPublicKey: y.privateKey, user: 'ylegit' })).certificate);
      const p = spawnSsh(sshArgs(y, relay.sshPort, 'ylegit', { extra: ['-W', `${exposure}:22`] }));
      const r = await exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), bytes);
      assert.equal(r.echoedHash, r.sentHash, 'what X received differs from what Y (OpenSSH) sent');
      assert.equal(r.replyBytes, REPLY, "Y (OpenSSH) did not receive all of X's reply");
      assert.equal(await p.exited, 0, p.stderr());
    },
    async expose(name, servicePort) {
      const x = await clientFiles(relay.sshPort, hostKeyLine);
      await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: name, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' })).certificate);
      const p = spawnSsh(sshArgs(x, relay.sshPort, 'xowner', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${name}:22:127.0.0.1:${servicePort}`] }));
      await p.waitStderr(/remote forward success/);
    },
    logs,
    async relayClosed(user, from, timeoutMs = 30_000) {
      await relay.waitForStderr(new RegExp(`"msg":"connection authenticated"[^\\n]*"user":"${user}"`), from, timeoutMs);
      const sid = String(logs(from).find((l) => l.msg === 'connection authenticated' && l.user === user)?.sessionId);
      await relay.waitForStderr(new RegExp(`"msg":"connection closed"[^\\n]*"sessionId":"${sid}"`), from, timeoutMs);
      return logs(from).find((l) => l.msg === 'connection closed' && l.sessionId === sid)!;
    },
    async stop() {
      killAll();
      for (const c of clients) c.destroy();
      service.server.close();
      await relay.stop();
      relay.cleanup();
      await fc.stop();
    },
  };
}

/**
 * A raw TCP socket to the relay's SSH port that never sends anything. Resolves once the
 * outcome is known: `banner` (the relay sent its identification line: admitted) or `closed`
 * (the relay closed it without a banner: dropped).
 */
export function silentSocket(port: number, localAddress: string): { sock: Socket; outcome: Promise<'banner' | 'closed'>; closed: Promise<void> } {
  const sock = connect({ host: '127.0.0.1', port, localAddress });
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  const outcome = new Promise<'banner' | 'closed'>((resolve) => {
    sock.once('data', () => resolve('banner'));
    sock.once('close', () => resolve('closed'));
  });
  return { sock, outcome, closed };
}
