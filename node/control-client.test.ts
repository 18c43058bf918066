/**
 * The relay's control-plane client with several replicas (`--control-url a,b`): a replica that
 * cannot be reached is skipped and the one that answered is used first from then on; config
 * parsing takes the list; the egress base rules allow every replica. Its HTTP transport
 * (node:https, no undici: protocol/tls-trust-https.ts): the pin and the CA file are checked
 * before a request is written, connections are kept alive, answers and waits are bounded.
 */
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSelfSignedCert } from '../control/tls/self-signed.js';
import { certificatePin } from '../protocol/tls-trust.js';
import { FEED_PAGE_MAX_ENTRIES } from '../protocol/node-api-check.js';
import { ControlError, createControlClient, MAX_RETRY_AFTER_MS, readRetryAfter } from './control-client.js';
import { ConfigError, parseConfig } from './config.js';
import { resolveBaseRules } from './egress/base-rules.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function jwksServer(): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const srv = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [] }));
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, hits: () => hits };
}

async function deadUrl(): Promise<string> {
  const srv = createTcpServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

describe('relay control client with several replicas', () => {
  it('skips a replica that refuses connections, then keeps using the one that answered', async () => {
    const live = await jwksServer();
    const client = createControlClient({ baseUrl: `${await deadUrl()},${live.url}`, nodeToken: () => undefined, timeoutMs: 5_000 });
    try {
      assert.deepEqual(await client.fetchJwks(), { keys: [] });
      assert.deepEqual(await client.fetchJwks(), { keys: [] });
      assert.equal(live.hits(), 2);
    } finally {
      await client.close();
    }
  });

  it('all replicas down: one retryable CONTROL_UNREACHABLE', async () => {
    const client = createControlClient({ baseUrl: `${await deadUrl()},${await deadUrl()}`, nodeToken: () => undefined, timeoutMs: 5_000 });
    try {
      await assert.rejects(client.fetchJwks(), (e: unknown) => (e as { code?: string; retryable?: boolean }).code === 'CONTROL_UNREACHABLE' && (e as { retryable: boolean }).retryable);
    } finally {
      await client.close();
    }
  });

  it('--control-url takes a comma-separated list (trailing slashes dropped, each URL checked)', () => {
    const r = parseConfig(['--control-url', 'https://a:8443/,https://b:8443', '--listen', '127.0.0.1:2222'], {});
    assert.equal(r.kind === 'run' && r.config.controlUrl, 'https://a:8443,https://b:8443');
    assert.throws(() => parseConfig(['--control-url', 'https://a,nope', '--listen', '127.0.0.1:2222'], {}), ConfigError);
    assert.throws(() => parseConfig(['--control-url', 'https://a,http://10.0.0.1:80', '--listen', '127.0.0.1:2222'], {}), /insecure-http|plain http/);
  });

  it('the egress lock lets the relay reach every replica', async () => {
    const rules = await resolveBaseRules('https://10.0.0.1:8443,https://10.0.0.2', { lookup: () => Promise.reject(new Error('no lookups for IPs')) });
    assert.deepEqual(rules, { control: [{ address: '10.0.0.1', port: 8443 }, { address: '10.0.0.2', port: 443 }], dns: [] });
  });
});

/** An HTTPS server with a fresh self-signed certificate for 127.0.0.1 that counts requests and connections. */
async function httpsJwks(answer = '{"keys":[]}'): Promise<{ url: string; certPem: string; pin: string; requests: () => number; connections: () => number }> {
  const cert = createSelfSignedCert(['127.0.0.1'], new Date());
  let requests = 0;
  let connections = 0;
  const srv = createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => {
    requests++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(answer);
  });
  srv.on('connection', () => connections++);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(srv.address() as { port: number }).port}`,
    certPem: cert.certPem,
    pin: certificatePin(cert.certPem),
    requests: () => requests,
    connections: () => connections,
  };
}

const failsWith = (code: string, message: RegExp) => (e: unknown) => {
  const err = e as { code?: string; message?: string };
  assert.equal(err.code, code, String(err.message));
  assert.match(String(err.message), message);
  return true;
};

describe('relay control client over node:https: trust and bounds', () => {
  it('with the pin: answers, one kept-alive connection for several calls', async () => {
    const srv = await httpsJwks();
    const client = createControlClient({ baseUrl: srv.url, nodeToken: () => undefined, trust: { caPin: srv.pin }, timeoutMs: 5_000 });
    try {
      for (let i = 0; i < 3; i++) assert.deepEqual(await client.fetchJwks(), { keys: [] });
      assert.equal(srv.requests(), 3);
      assert.equal(srv.connections(), 1);
    } finally {
      await client.close();
    }
  });

  it('a server with another key than the pin: CONTROL_UNTRUSTED, and it gets no request', async () => {
    const right = await httpsJwks();
    const impostor = await httpsJwks();
    const client = createControlClient({ baseUrl: impostor.url, nodeToken: () => 'node-token', trust: { caPin: right.pin }, timeoutMs: 5_000 });
    try {
      await assert.rejects(client.fetchJwks(), failsWith('CONTROL_UNTRUSTED', /does not match the pin: it has sha256:[0-9a-f]{64}, expected sha256:/));
      await assert.rejects(client.heartbeat({} as never), failsWith('CONTROL_UNTRUSTED', /does not match the pin/));
      assert.equal(impostor.connections(), 2, 'the client connected');
      assert.equal(impostor.requests(), 0, 'the impostor got a request');
    } finally {
      await client.close();
    }
  });

  it('with a CA file: its server answers; another certificate and the system CAs are refused, with no request', async () => {
    const right = await httpsJwks();
    const other = await httpsJwks();
    const dir = mkdtempSync(join(tmpdir(), 'tunnel-cc-'));
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, right.certPem);
    const byCa = createControlClient({ baseUrl: right.url, nodeToken: () => undefined, trust: { caFile }, timeoutMs: 5_000 });
    const wrong = createControlClient({ baseUrl: other.url, nodeToken: () => undefined, trust: { caFile }, timeoutMs: 5_000 });
    const system = createControlClient({ baseUrl: right.url, nodeToken: () => undefined, timeoutMs: 5_000 });
    try {
      assert.deepEqual(await byCa.fetchJwks(), { keys: [] });
      await assert.rejects(wrong.fetchJwks(), failsWith('CONTROL_UNTRUSTED', /not trusted/));
      await assert.rejects(system.fetchJwks(), failsWith('CONTROL_UNTRUSTED', /not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/));
      assert.equal(other.requests(), 0);
      assert.equal(right.requests(), 1);
    } finally {
      await Promise.all([byCa.close(), wrong.close(), system.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an answer over the bound is a bad response, not read to its end', async () => {
    const srv = await httpsJwks(JSON.stringify({ keys: [], pad: 'x'.repeat(64 * 1024) }));
    const client = createControlClient({ baseUrl: srv.url, nodeToken: () => undefined, trust: { caPin: srv.pin }, timeoutMs: 5_000, maxAnswerBytes: 16 * 1024 });
    try {
      await assert.rejects(client.fetchJwks(), failsWith('CONTROL_BAD_RESPONSE', /over 16384 bytes/));
    } finally {
      await client.close();
    }
  });

  it('a server that trickles its answer a byte at a time, each within the idle timeout: given up at the overall timeout (h-front, held)', async () => {
    const timers = new Set<NodeJS.Timeout>();
    const slow = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":[');
      const t = setInterval(() => res.write(' '), 50);
      timers.add(t);
      res.once('close', () => clearInterval(t));
    });
    servers.push(slow);
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(slow.address() as { port: number }).port}`, nodeToken: () => undefined, timeoutMs: 400 });
    try {
      await assert.rejects(client.fetchJwks(), failsWith('CONTROL_UNREACHABLE', /unreachable/));
    } finally {
      for (const t of timers) clearInterval(t);
      slow.closeAllConnections();
      await client.close();
    }
  });

  it('a server that accepts and never answers: CONTROL_UNREACHABLE after the timeout', async () => {
    const silent = createTcpServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const plain = createControlClient({ baseUrl: `http://127.0.0.1:${port}`, nodeToken: () => undefined, timeoutMs: 300 });
    const pinned = createControlClient({ baseUrl: `https://127.0.0.1:${port}`, nodeToken: () => undefined, trust: { caPin: `sha256:${'0'.repeat(64)}` }, timeoutMs: 300 });
    try {
      await assert.rejects(plain.fetchJwks(), failsWith('CONTROL_UNREACHABLE', /unreachable/));
      await assert.rejects(pinned.fetchJwks(), failsWith('CONTROL_UNREACHABLE', /unreachable/));
    } finally {
      await Promise.all([plain.close(), pinned.close()]);
      silent.close();
    }
  });
});

describe('relay control client: event batches', () => {
  it("reads the events control refused one by one; an answer without them (an older control plane) accepted all", async () => {
    const answers = ['{"accepted":1,"rejected":[{"index":1,"code":"VALIDATION_FAILED","field":"reason"}]}', '', '{}'];
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end(answers.shift());
      });
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => 'tnl_node_x', timeoutMs: 5_000 });
    const events = [
      { type: 'conn_open' as const, at: '2026-12-02T00:00:00Z' },
      { type: 'conn_close' as const, at: '2026-12-02T00:00:01Z' },
    ];
    try {
      assert.deepEqual(await client.sendEvents(events), { accepted: 1, rejected: [{ index: 1, code: 'VALIDATION_FAILED', field: 'reason' }] });
      assert.deepEqual(await client.sendEvents(events), { accepted: 2, rejected: [] });
      assert.deepEqual(await client.sendEvents(events), { accepted: 2, rejected: [] });
    } finally {
      await client.close();
    }
  });
});

describe('relay control client: Retry-After', () => {
  const now = Date.parse('2026-12-05T12:00:00Z');
  it('reads delay-seconds, and an HTTP-date measured from the answer\'s date (else from now), bounded', () => {
    assert.equal(readRetryAfter('2'), 2000);
    assert.equal(readRetryAfter(' 30 '), 30_000);
    assert.equal(readRetryAfter('999999999'), MAX_RETRY_AFTER_MS);
    assert.equal(readRetryAfter('Sat, 05 Dec 2026 12:00:45 GMT', undefined, now), 45_000);
    // The server's clock 10 minutes behind this host's: its date says 45 s from its now, not 10 minutes ago.
    assert.equal(readRetryAfter('Sat, 05 Dec 2026 11:50:45 GMT', 'Sat, 05 Dec 2026 11:50:00 GMT', now), 45_000);
    assert.equal(readRetryAfter('Sat, 05 Dec 2026 11:59:00 GMT', undefined, now), 0, 'a date already past: at once');
    assert.equal(readRetryAfter('Sun, 06 Dec 2026 12:00:00 GMT', undefined, now), MAX_RETRY_AFTER_MS);
    for (const v of [undefined, ['1', '2'], '', '-1', '1.5', 'soon', 'Sat Dec  5 12:00:45 2026', '2026-12-05T12:00:45Z', 'Sat, 05 Dec 2026 12:00:45 +0000']) {
      assert.equal(readRetryAfter(v, undefined, now), undefined, String(v));
    }
  });

  it('a 503 with Retry-After as an HTTP-date (a proxy in front of control) reaches the caller as retryAfterMs', async () => {
    const srv = createServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/problem+json', date: 'Sat, 05 Dec 2026 12:00:00 GMT', 'retry-after': 'Sat, 05 Dec 2026 12:01:00 GMT' });
      res.end(JSON.stringify({ code: 'DATABASE_UNAVAILABLE', status: 503 }));
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => undefined, timeoutMs: 5_000 });
    try {
      await assert.rejects(client.fetchJwks(), (e: unknown) => e instanceof ControlError && e.opts.status === 503 && e.opts.retryAfterMs === 60_000);
    } finally {
      await client.close();
    }
  });
});

describe('relay control client: revocation feed', () => {
  it('a long-lived stop signal keeps nothing per request, and still ends a request the server holds', async () => {
    let hold = false;
    const srv = createServer((_req, res) => {
      if (hold) return; // never answered: a long poll the server holds
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ cursor: '1', revocations: [] }));
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => 'tnl_node_x', timeoutMs: 5_000 });
    const stop = new AbortController();
    try {
      for (let i = 0; i < 200; i++) await client.revocations('0', 0, stop.signal);
      assert.equal(getEventListeners(stop.signal, 'abort').length, 0, 'listeners left on the stop signal');
      // Node's own record of signals made from it (AbortSignal.any): 200 entries, never freed, before.
      const dependants = Object.getOwnPropertySymbols(stop.signal).find((k) => k.description === 'kDependantSignals');
      const kept = dependants ? (stop.signal as unknown as Record<symbol, Set<unknown> | undefined>)[dependants] : undefined;
      assert.equal(kept?.size ?? 0, 0, 'per-request signals kept by the stop signal');
      hold = true;
      const arrived = once(srv, 'request');
      const held = client.revocations('0', 20_000, stop.signal);
      await arrived;
      stop.abort();
      await assert.rejects(held);
    } finally {
      srv.closeAllConnections();
      await client.close();
    }
  });

  it('an answer with more entries than FEED_PAGE_MAX_ENTRIES is a bad response; one at the bound is read', async () => {
    const entries = (n: number) => Array.from({ length: n }, () => ({ lease_id: `lse_${'a'.repeat(32)}`, exp: 2_000_000_000 }));
    const answers = [{ cursor: '1', revocations: entries(FEED_PAGE_MAX_ENTRIES + 1) }, { cursor: '2', revocations: entries(FEED_PAGE_MAX_ENTRIES) }];
    const srv = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answers.shift()));
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = createControlClient({ baseUrl: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, nodeToken: () => 'tnl_node_x', timeoutMs: 5_000 });
    try {
      await assert.rejects(client.revocations('0', 0), failsWith('CONTROL_BAD_RESPONSE', /./));
      assert.equal((await client.revocations('1', 0)).revocations.length, FEED_PAGE_MAX_ENTRIES);
    } finally {
      await client.close();
    }
  });
});
