/**
 * The body limit through the real HTTP server (@hono/node-server), where limitBody judges a body
 * with a Content-Length by its header and never builds a web Request stream for it: too long a
 * declared length is refused before the body is read, a chunked body is counted while it is
 * read, and bodies under the limit reach the route either way. requireJson parses a body once,
 * and refuses what another reader (a proxy, a WAF) could read otherwise: a member named twice, a
 * Content-Encoding, a charset other than UTF-8 or one named twice, a byte order mark; a Content-Type
 * without a body gets a detail.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import type { AppEnv } from './env.js';
import { duplicateJsonKey } from './json-duplicate-key.js';
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
    await t.user('someone', 'member'); // an allow list names existing users
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

/** One request over real HTTP with `body` sent byte for byte (no length header for an undefined body). */
function send(url: string, method: string, path: string, headers: Record<string, string>, body?: Buffer | string): Promise<{ status: number; body: { code?: string; detail?: string }; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const h = { ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) };
    const req = request(`${url}${path}`, { method, headers: h }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as { code?: string }) : {}, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('requireJson: bodies read one way only, over real HTTP', () => {
  let t: TestApp;
  let s: ServedApp;
  let auth: Record<string, string>;
  before(async () => {
    t = await createTestApp();
    s = await serveTestApp(t);
    auth = { authorization: `Bearer ${(await t.user('body-edges', 'member')).token}` };
    await t.user('allow', 'member'); // an allow list names existing users
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });
  const json = { 'content-type': 'application/json' };

  it('a member named twice in one object (at any depth, however it is escaped) is 400 INVALID_JSON naming it, and nothing is written', async () => {
    for (const [i, body] of ['{"allow":["a"],"allow":["b"]}', '{"allow":[],"\\u0061llow":["b"]}', '{"allow":[{"x":1,"x":2}]}'].entries()) {
      const r = await send(s.url, 'PUT', `/v1/exposures/dup-${i}`, { ...auth, ...json }, body);
      assert.equal(r.status, 400, body);
      assert.equal(r.body.code, 'INVALID_JSON', body);
      assert.match(r.body.detail ?? '', /names "(allow|x)" twice/, body);
      assert.equal((await send(s.url, 'GET', `/v1/exposures/dup-${i}`, auth)).status, 404, 'not created');
    }
    // The same name in different objects, or as a value, is fine.
    const ok = await send(s.url, 'PUT', '/v1/exposures/dup-ok', { ...auth, ...json }, '{"allow":["allow"]}');
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  });

  it('a Content-Type with no body is 400 INVALID_JSON with a detail saying the body is empty (the token endpoint answered 500)', async () => {
    for (const [method, path, headers] of [
      ['POST', '/v1/leases', auth],
      ['PUT', '/v1/exposures/empty', auth],
      ['POST', '/v1/auth/token', {}],
    ] as const) {
      for (const body of ['', undefined]) {
        const r = await send(s.url, method, path, { ...headers, ...json, ...(body === undefined ? { 'transfer-encoding': 'chunked' } : {}) }, body);
        assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'INVALID_JSON', path);
        assert.match(r.body.detail ?? '', /request body is empty/, path);
      }
    }
  });

  it('Content-Encoding gzip (or any coding but identity) is 415 with a detail, whether or not the bytes are compressed', async () => {
    const plain = '{"allow":[]}';
    for (const [encoding, body] of [['gzip', gzipSync(plain)], ['gzip', plain], ['br', plain], ['deflate, identity', plain]] as const) {
      const r = await send(s.url, 'PUT', '/v1/exposures/coded', { ...auth, ...json, 'content-encoding': encoding }, body);
      assert.equal(r.status, 415, encoding);
      assert.equal(r.body.code, 'UNSUPPORTED_MEDIA_TYPE', encoding);
      assert.match(r.body.detail ?? '', /Content-Encoding .* is not accepted/);
      assert.equal(r.headers['accept-encoding'], 'identity');
    }
    const identity = await send(s.url, 'PUT', '/v1/exposures/coded', { ...auth, ...json, 'content-encoding': 'identity' }, plain);
    assert.equal(identity.status, 201, JSON.stringify(identity.body));
  });

  it('a charset other than UTF-8 is 415 with a detail, even when the bytes happen to be ASCII; UTF-8 bytes are required', async () => {
    const plain = '{"allow":[]}';
    for (const [type, body] of [
      ['application/json; charset=utf-16', Buffer.from(plain, 'utf16le')],
      ['application/json; charset=utf-16', plain],
      ['application/json;charset="ISO-8859-1"', plain],
    ] as const) {
      const r = await send(s.url, 'PUT', '/v1/exposures/charset', { ...auth, 'content-type': type }, body);
      assert.equal(r.status, 415, type);
      assert.equal(r.body.code, 'UNSUPPORTED_MEDIA_TYPE', type);
      assert.match(r.body.detail ?? '', /charset .* is not accepted: send JSON as UTF-8/);
    }
    for (const type of ['application/json; charset=UTF-8', 'application/json; charset="utf-8"']) {
      const r = await send(s.url, 'PUT', '/v1/exposures/charset', { ...auth, 'content-type': type }, plain);
      assert.ok(r.status === 201 || r.status === 200, `${type}: ${JSON.stringify(r.body)}`);
    }
    // A charset named twice, or with more after its quotes, is read one way by one reader and
    // another way by the next (the first or the last; a reader that stops at the quote): refused.
    for (const type of ['application/json; charset=utf-8; charset=latin1', 'application/json; charset=UTF-8;charset=utf-8', 'application/json; charset="utf-8"x', "application/json; charset*=utf-8''latin1"]) {
      const r = await send(s.url, 'PUT', '/v1/exposures/charset-twice', { ...auth, 'content-type': type }, plain);
      assert.equal(r.status, 415, `${type}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'UNSUPPORTED_MEDIA_TYPE', type);
    }
    assert.equal((await send(s.url, 'GET', '/v1/exposures/charset-twice', auth)).status, 404, 'not created');
    // Latin-1 bytes labelled UTF-8 are not read with replacement characters.
    const latin1 = Buffer.concat([Buffer.from('{"allow":["'), Buffer.from([0xe9]), Buffer.from('"]}')]);
    const r = await send(s.url, 'PUT', '/v1/exposures/charset-bytes', { ...auth, ...json }, latin1);
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'INVALID_JSON');
    assert.match(r.body.detail ?? '', /not UTF-8/);
  });

  it('a body that starts with a byte order mark is 400 INVALID_JSON saying so (it was dropped, and the body acted on)', async () => {
    const r = await send(s.url, 'PUT', '/v1/exposures/bom', { ...auth, ...json }, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"allow":[]}')]));
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.code, 'INVALID_JSON');
    assert.match(r.body.detail ?? '', /byte order mark/);
    assert.equal((await send(s.url, 'GET', '/v1/exposures/bom', auth)).status, 404, 'not created');
  });

  it('OAuth form bodies get the same checks: another charset or one named twice 415, bytes or escapes not UTF-8 and a byte order mark 400 INVALID_FORM', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const refused = async (path: string, headers: Record<string, string>, body: Buffer | string, status: number, code: string, detail: RegExp) => {
      const r = await send(s.url, 'POST', path, headers, body);
      const what = `${path} ${JSON.stringify(headers)} ${JSON.stringify(body.toString())}`;
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, code, what);
      assert.equal((r.body as { error?: string }).error, 'invalid_request', what);
      assert.match(r.body.detail ?? '', detail, what);
    };
    const device = 'client_name=caf%C3%A9';
    for (const type of ['application/x-www-form-urlencoded; charset=iso-8859-1', 'application/x-www-form-urlencoded; charset=utf-8; charset=latin1']) {
      await refused('/v1/auth/device', { 'content-type': type }, device, 415, 'UNSUPPORTED_MEDIA_TYPE', /charset/);
    }
    await refused('/v1/auth/device', { ...form, 'content-encoding': 'gzip' }, gzipSync(device), 415, 'UNSUPPORTED_MEDIA_TYPE', /Content-Encoding/);
    await refused('/v1/auth/device', form, Buffer.concat([Buffer.from('client_name=caf'), Buffer.from([0xe9])]), 400, 'INVALID_FORM', /not UTF-8/);
    await refused('/v1/auth/device', form, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(device)]), 400, 'INVALID_FORM', /byte order mark/);
    // Escapes URLSearchParams reads as U+FFFD (%E9: Latin-1) or keeps as written (%zz).
    for (const password of ['caf%E9', '%zz', '%C3']) {
      await refused('/v1/auth/token', form, `grant_type=password&username=someone&password=${password}`, 400, 'INVALID_FORM', /percent-encoded UTF-8/);
    }
    for (const type of ['application/x-www-form-urlencoded; charset=UTF-8', 'application/x-www-form-urlencoded']) {
      const ok = await send(s.url, 'POST', '/v1/auth/device', { 'content-type': type }, device);
      assert.equal(ok.status, 200, `${type}: ${JSON.stringify(ok.body)}`);
    }
    const escaped = await send(s.url, 'POST', '/v1/auth/token', form, 'grant_type=refresh_token&refresh_token=tnl_rt_%41b%2Bc');
    assert.equal(escaped.body.code, 'INVALID_GRANT', JSON.stringify(escaped.body));
  });
});

describe('duplicateJsonKey', () => {
  it('finds a name given twice in one object, and only then', () => {
    const cases: [string, string | undefined][] = [
      ['{"a":1,"a":2}', 'a'],
      ['{"a":{"b":1},"b":2}', undefined],
      ['{"a":{"b":1,"b":2}}', 'b'],
      ['[{"a":1},{"a":1}]', undefined],
      ['{"a":"\\"a\\"","b":["a","a"],"c":{}}', undefined],
      ['{"\\"":1,"\\u0022":2}', '"'],
      ['{"a\\\\":1,"a\\u005c":2}', 'a\\'],
      ['{"__proto__":1,"__proto__":2}', '__proto__'],
      [' { "a" : [ ] , "a" : 1 } ', 'a'],
      ['"a"', undefined],
      ['{}', undefined],
    ];
    for (const [text, name] of cases) {
      JSON.parse(text);
      assert.equal(duplicateJsonKey(text), name, text);
    }
  });
});
