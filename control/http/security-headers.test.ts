/**
 * Strict-Transport-Security: sent on every answer the browser gets over HTTPS (this server's own
 * TLS, or an https: public URL, the operator's word that a TLS proxy is in front), never over
 * plain HTTP.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/test-app.js';

const PATHS = ['/console/login', '/console/nope', '/healthz', '/v1/me', '/device'];

describe('Strict-Transport-Security', () => {
  const apps: TestApp[] = [];
  after(async () => {
    for (const t of apps) await t.close();
  });
  async function hsts(issuer: string, base: string): Promise<(string | null)[]> {
    const t = await createTestApp({ settings: { issuer } });
    apps.push(t);
    const out: (string | null)[] = [];
    for (const p of PATHS) out.push((await t.app.fetch(new Request(`${base}${p}`))).headers.get('strict-transport-security'));
    return out;
  }

  it('is not sent over plain HTTP (the walkthrough\'s http://127.0.0.1:8080)', async () => {
    assert.deepEqual(await hsts('http://127.0.0.1:8080', 'http://127.0.0.1:8080'), PATHS.map(() => null));
  });

  it('is sent when this server speaks HTTPS', async () => {
    assert.deepEqual(await hsts('https://127.0.0.1:8443', 'https://127.0.0.1:8443'), PATHS.map(() => 'max-age=31536000'));
  });

  it('is sent behind a TLS-terminating proxy (an https: public URL, plain HTTP on loopback)', async () => {
    assert.deepEqual(await hsts('https://tunnel.example.com', 'http://127.0.0.1:8080'), PATHS.map(() => 'max-age=31536000'));
  });
});
