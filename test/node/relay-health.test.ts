/**
 * The relay's metrics port: /healthz (JSON, 503 when it cannot serve) and /metrics (Prometheus
 * text) report the native crypto binding and the egress driver, and the counters move with
 * refused and accepted connections, refused requests and bridged channels.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { fetch } from 'undici';
import type { Jwks } from '../../protocol/jwks.js';
import { API_LEVEL } from '../../protocol/api-level.js';
import { nativeCryptoAvailable } from '../../node/ssh2-internals.js';
import { mintLease, signingKey, startFakeControl, startRelay, type FakeControl, type MintOptions, type StartedRelay } from '../harness/relay.js';
import { parsePrometheusText, type PromText } from './prom-text.js';
import { connectWithCertificate } from './ssh2-cert-client.js';
import { within } from './ssh-tools.js';

const NAME = 'hostx-metrics';

interface Health {
  ok: boolean;
  status: string;
  node_id: string;
  version: string;
  api_level: number;
  native_crypto: unknown;
  egress_driver: unknown;
  jwks: { source: string; keys: number };
  connections: number;
  exposures: { name: string; port: number }[];
}

async function get(port: number, path: string, method = 'GET') {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** Resolves once `cond()` holds; polls a local condition, bounded by `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('relay /healthz and /metrics', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  const clients: Client[] = [];

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
  });

  after(async () => {
    for (const c of clients) c.end();
    await relay?.stop();
    await fc?.stop();
  });

  const health = async (detail = false) => {
    const r = await get(relay.metricsPort, detail ? '/healthz?detail=1' : '/healthz');
    return { ...r, body: JSON.parse(r.text) as Health };
  };
  const metrics = async (): Promise<PromText> => {
    const r = await get(relay.metricsPort, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(r.text);
  };

  /** An ssh2 client holding a certificate for `grant`, connected to the relay. */
  async function connect(user: string, mint: Partial<MintOptions> & Pick<MintOptions, 'grant'>): Promise<Client> {
    const { privateKey } = generateKeyPairSync('ed25519');
    const lease = await mintLease(fc, { clientPublicKey: privateKey, user, ...mint });
    const c = await connectWithCertificate({ port: relay.port, username: user, privateKey, certificate: lease.certificate, hostKeyLine: relay.hostKeyLine });
    clients.push(c);
    return c;
  }

  it('reports status, node id, its version, the native crypto binding and the egress driver on /healthz', async () => {
    const h = await health();
    assert.equal(h.status, 200);
    assert.match(h.type, /^application\/json/);
    assert.equal(h.body.ok, true);
    assert.equal(h.body.status, 'ok');
    assert.equal((await health(true)).body.node_id, fc.nodeId, 'detail (served to loopback) names the node');
    assert.equal(h.body.node_id, undefined, 'the default /healthz does not name the node');
    assert.equal(h.body.version, 'test', 'the version the harness boots it with');
    assert.equal(h.body.api_level, API_LEVEL);
    assert.equal(h.body.native_crypto, nativeCryptoAvailable());
    assert.ok(h.body.egress_driver === 'iptables' || h.body.egress_driver === 'off', `egress_driver: ${String(h.body.egress_driver)}`);
    assert.deepEqual({ source: h.body.jwks.source, keys: h.body.jwks.keys }, { source: 'network', keys: fc.jwks.keys.length });
    // The control plane hears the same thing in the heartbeat.
    await until(() => fc.heartbeats.length > 0, 5000, 'first heartbeat');
    const hb = fc.heartbeats[0] as { version: unknown; native_crypto: unknown; egress_driver: unknown };
    assert.equal(hb.version, h.body.version);
    assert.equal(hb.native_crypto, h.body.native_crypto);
    assert.equal(hb.egress_driver, h.body.egress_driver);
  });

  it('serves well-formed Prometheus text whose gauges agree with /healthz', async () => {
    const m = await metrics();
    const h = (await health()).body;
    assert.equal(m.value('tunnel_node_native_crypto'), h.native_crypto ? 1 : 0);
    assert.equal(m.value('tunnel_node_jwks_keys'), h.jwks.keys);
    assert.equal(m.value('tunnel_node_connections'), h.connections);
    for (const [name, type] of m.types) assert.equal(type, name.endsWith('_total') ? 'counter' : 'gauge', name);
    assert.equal(m.types.get('tunnel_node_auth_failures_total'), 'counter');
  });

  it('counts a refused connection', async () => {
    const before = await metrics();
    const { privateKey } = generateKeyPairSync('ed25519');
    const rogue = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: privateKey, user: 'yrogue', keys: { lease: fc.keys.lease, ca: signingKey('rogue-ca') } });
    await assert.rejects(
      connectWithCertificate({ port: relay.port, username: 'yrogue', privateKey, certificate: rogue.certificate, hostKeyLine: relay.hostKeyLine }),
      (err: Error & { level?: string }) => err.level === 'client-authentication',
    );
    const after = await metrics();
    assert.equal(after.value('tunnel_node_connections_total') - before.value('tunnel_node_connections_total'), 1);
    const fails = (m: PromText) => m.value('tunnel_node_auth_failures_total', { reason: 'ca_untrusted' });
    assert.equal(fails(after) - fails(before), 1);
    assert.equal(after.value('tunnel_node_auth_successes_total', { kind: 'open' }), before.value('tunnel_node_auth_successes_total', { kind: 'open' }));
  });

  it('counts accepted connections, a refused request and a bridged channel with its bytes', async () => {
    const before = await metrics();
    const x = await connect('xowner', { grant: { kind: 'expose', exposure: NAME, port: 22 } });
    x.on('tcp connection', (_info, accept) => {
      const ch = accept();
      ch.on('data', (d: Buffer) => ch.write(d));
      ch.on('end', () => ch.end());
    });
    await new Promise<void>((resolve, reject) => x.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    const y = await connect('yuser', { grant: { kind: 'open', exposure: NAME } });

    // A session channel (exec) is refused and counted.
    await assert.rejects(new Promise((resolve, reject) => y.exec('id', (err, s) => (err ? reject(err) : resolve(s)))));

    const ch = await new Promise<ClientChannel>((resolve, reject) => y.forwardOut('127.0.0.1', 40000, NAME, 22, (err, s) => (err ? reject(err) : resolve(s))));
    const payload = Buffer.alloc(100_000, 7);
    const echoed = new Promise<number>((resolve) => {
      let n = 0;
      ch.on('data', (d: Buffer) => (n += d.length));
      ch.on('end', () => resolve(n));
    });
    ch.write(payload);
    const during = await metrics();
    assert.equal(during.value('tunnel_node_active_channels'), 1);
    assert.equal(during.value('tunnel_node_exposures_online'), 1);
    assert.equal(during.value('tunnel_node_connections') - before.value('tunnel_node_connections'), 2);
    ch.end();
    assert.equal(await within(echoed, 10_000, 'echo'), payload.length);
    await until(() => relay.relay.health().connections === 2 && /tunnel_node_active_channels 0\n/.test(relay.relay.metricsText()), 5000, 'channel closed');

    const after = await metrics();
    const delta = (name: string, labels?: Record<string, string>) => after.value(name, labels) - before.value(name, labels);
    assert.equal(delta('tunnel_node_connections_total'), 2);
    assert.equal(delta('tunnel_node_auth_successes_total', { kind: 'expose' }), 1);
    assert.equal(delta('tunnel_node_auth_successes_total', { kind: 'open' }), 1);
    assert.equal(delta('tunnel_node_refused_requests_total', { type: 'session' }), 1);
    assert.equal(delta('tunnel_node_bridged_channels_total', { outcome: 'opened' }), 1);
    assert.equal(delta('tunnel_node_bridged_channels_total', { outcome: 'eof' }), 1);
    assert.equal(delta('tunnel_node_bytes_total', { direction: 'to_exposure' }), payload.length);
    assert.equal(delta('tunnel_node_bytes_total', { direction: 'from_exposure' }), payload.length);
    const h = (await health(true)).body;
    assert.deepEqual(h.exposures, [{ name: NAME, port: 22 }]);
    // Unauthenticated callers get counts only: no exposure names, lease ids or node id.
    const plain = await get(relay.metricsPort, '/healthz');
    assert.doesNotMatch(plain.text, new RegExp(`${NAME}|${fc.nodeId}|lease_`));
    assert.equal((JSON.parse(plain.text) as { exposures_online: number }).exposures_online, 1);
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    assert.equal((await get(relay.metricsPort, '/nope')).status, 404);
    assert.equal((await get(relay.metricsPort, '/healthz', 'POST')).status, 405);
  });
});

describe('relay /healthz without a trust document', () => {
  it('answers 503 no_trust while it has no JWKS', async () => {
    const fc = await startFakeControl();
    fc.jwks = { keys: [] } as unknown as Jwks;
    const relay = await startRelay(fc);
    try {
      const r = await get(relay.metricsPort, '/healthz');
      assert.equal(r.status, 503);
      const body = JSON.parse(r.text) as Health;
      assert.equal(body.ok, false);
      assert.equal(body.status, 'no_trust');
      assert.equal(parsePrometheusText((await get(relay.metricsPort, '/metrics')).text).value('tunnel_node_jwks_keys'), 0);
    } finally {
      await relay.stop();
      await fc.stop();
    }
  });
});

describe('relay /healthz while the control plane refuses it', () => {
  it('says on /healthz that heartbeats fail, and why: a control plane refusing the relay\'s API level', async () => {
    const fc = await startFakeControl();
    const relay = await startRelay(fc, { args: ['--heartbeat-interval', '200ms'] });
    try {
      const hb = async () => JSON.parse((await get(relay.metricsPort, '/healthz')).text) as Health & { heartbeat: { failing: boolean; last_error: string | null } };
      await relay.logger.waitFor((l) => l.msg === 'relay ready');
      const since = relay.logger.lines.length;
      const accept = fc.refuseLevel();
      await relay.logger.waitFor((l) => l.msg === 'heartbeat failed', 10_000, since);
      const refused = await hb();
      assert.deepEqual({ failing: refused.heartbeat.failing, last_error: refused.heartbeat.last_error }, { failing: true, last_error: 'API_LEVEL_UNSUPPORTED' });
      assert.equal(refused.ok, true, 'still serving with the JWKS it holds: not pulled from the load balancer');
      accept();
      await relay.logger.waitFor((l) => l.msg === 'heartbeat recovered', 10_000, since);
      const { failing, last_error: lastError } = (await hb()).heartbeat;
      assert.deepEqual({ failing, last_error: lastError }, { failing: false, last_error: null });
    } finally {
      await relay.stop();
      await fc.stop();
    }
  });
});
