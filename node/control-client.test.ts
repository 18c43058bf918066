/**
 * The relay's control-plane client with several replicas (`--control-url a,b`): a replica that
 * cannot be reached is skipped and the one that answered is used first from then on; config
 * parsing takes the list; the egress base rules allow every replica.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { createControlClient } from './control-client.js';
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
