/**
 * The body limit through the real HTTP server (@hono/node-server), where limitBody judges a body
 * with a Content-Length by its header and never builds a web Request stream for it: too long a
 * declared length is refused before the body is read, a chunked body is counted while it is
 * read, and bodies under the limit reach the route either way. requireJson parses a body once.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import type { AppEnv } from './env.js';
import { requireJson } from './request-guards.js';
import { serveTestApp, type ServedApp } from '../testing/serve.js';

interface Answer {
  status: number;
  body: { code?: string };
}

/** PUT /v1/exposures/NAME with `chunks` written as given: with a Content-Length, or chunked. */
function put(url: string, token: string, name: string, chunks: string[], framing: 'length' | 'chunked'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = chunks.join('');
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    if (framing === 'length') headers['content-length'] = String(Buffer.byteLength(body));
    else headers['transfer-encoding'] = 'chunked';
    const req = request(`${url}/v1/exposures/${name}`, { method: 'PUT', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Answer['body']) : {} }));
      res.on('error', reject);
    });
    // The server may answer 413 and close before the whole body is sent.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('limitBody over real HTTP', () => {
  let t: TestApp;
  let s: ServedApp;
  let token: string;
  before(async () => {
    t = await createTestApp();
    s = await serveTestApp(t);
    token = (await t.user('body-limit', 'member')).token;
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  const big = () => `{"allow":[],"pad":"${'x'.repeat(t.deps.settings.maxBodyBytes)}"}`;

  it('a body with a Content-Length under the limit reaches the route', async () => {
    const r = await put(s.url, token, 'bl-len', ['{"allow":[]}'], 'length');
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });

  it('a Content-Length over the limit is refused with 413 PAYLOAD_TOO_LARGE', async () => {
    const r = await put(s.url, token, 'bl-len-big', [big()], 'length');
    assert.equal(r.status, 413);
    assert.equal(r.body.code, 'PAYLOAD_TOO_LARGE');
  });

  it('a chunked body under the limit reaches the route', async () => {
    const r = await put(s.url, token, 'bl-chunked', ['{"allow"', ':[]}'], 'chunked');
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });

  it('a chunked body over the limit is refused with 413 while it is read', async () => {
    const text = big();
    const r = await put(s.url, token, 'bl-chunked-big', [text.slice(0, 1000), text.slice(1000)], 'chunked');
    assert.equal(r.status, 413);
    assert.equal(r.body.code, 'PAYLOAD_TOO_LARGE');
  });
});

describe('requireJson', () => {
  it('parses a JSON body once: every later c.req.json() gets that parse', async () => {
    const app = new Hono<AppEnv>().use(requireJson).post('/x', async (c) => {
      const a: unknown = await c.req.json();
      const b: unknown = await c.req.json();
      return c.json({ same: a === b, body: b });
    });
    const r = await app.request('/x', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"k":[1]}' });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { same: true, body: { k: [1] } });
  });
});

describe('requireJson: every legal way to write a JSON content type reaches the route, on the wire and in process', () => {
  let t: TestApp;
  let s: ServedApp;
  let token: string;
  before(async () => {
    t = await createTestApp();
    s = await serveTestApp(t);
    token = (await t.user('json-types', 'member')).token;
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  // RFC 9110 §5.6.6: whitespace around `;` and empty parameters are legal. The validators' own
  // gate refused these with a bare BAD_REQUEST, after the body had been read as JSON here.
  const legal = ['application/json ; charset=utf-8', 'application/json;', 'application/json;charset=utf-8;', 'application/vnd.tunnel_v1+json', 'Application/JSON'];
  for (const via of ['http', 'in-process'] as const) {
    for (const [i, type] of legal.entries()) {
      it(`${via}: "${type}" is JSON, and the body is what the route gets`, async () => {
        const call = via === 'http' ? s.call : t.call;
        const name = `ct-${via === 'http' ? 'h' : 'p'}${i}`;
        const r = await call('PUT', `/v1/exposures/${name}`, { token, body: '{"allow":["someone"]}', headers: { 'content-type': type } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        assert.deepEqual(r.body.allow, ['someone']);
      });
    }
    it(`${via}: a type that is not a JSON media type is 415 UNSUPPORTED_MEDIA_TYPE, whatever the body`, async () => {
      const call = via === 'http' ? s.call : t.call;
      for (const type of ['application/foo bar+json', 'application/jsonx', 'text/json', 'application/json, text/plain']) {
        const r = await call('PUT', '/v1/exposures/ct-never', { token, body: '{"allow":[]}', headers: { 'content-type': type } });
        assert.equal(r.status, 415, `${type}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'UNSUPPORTED_MEDIA_TYPE', type);
      }
    });
  }
});
