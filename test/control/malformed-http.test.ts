/**
 * Requests Node's HTTP server refuses before the app sees them (a 100 KB token, a NUL in a
 * header, a raw byte over 0x7f in the path, CONNECT, an unknown Expect), sent to the real
 * `tunnel-control` binary: each is answered with problem+json and a stable code, like every other
 * error of the API, where Node wrote a bare status line without a body (or, for CONNECT,
 * nothing). The server keeps serving afterwards.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { checkProblem } from '../../protocol/problem.js';
import { startControlProcess, type ControlProcess } from '../harness/control.js';

interface RawAnswer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** Sends `request` (bytes as written) on a fresh connection and reads the answer until the server closes it. */
function rawExchange(url: string, request: Buffer): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(Number(port), hostname, () => sock.write(request));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', body = ''] = text.split('\r\n\r\n', 2);
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
  });
}

const request = (lines: (string | Buffer)[]) => Buffer.concat([...lines.map((l) => Buffer.concat([Buffer.from(l), Buffer.from('\r\n')])), Buffer.from('\r\n')]);

function assertRawProblem(r: RawAnswer, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify({ headers: [...r.headers], body: r.body }));
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(r.body));
  const problem = checkProblem(JSON.parse(r.body));
  assert.ok(problem, r.body);
  assert.equal(problem.code, code);
  assert.equal(problem.status, status);
  assert.match(problem.request_id, /^req_[0-9a-f]{32}$/);
  assert.equal(r.headers.get('x-request-id'), problem.request_id);
}

describe('tunnel-control answers requests Node cannot parse with problem+json', () => {
  let control: ControlProcess;
  before(async () => {
    control = await startControlProcess();
  });
  after(async () => {
    await control?.stop();
    control?.cleanup();
  });

  it('a request line and headers over the limit (a 100 KB bearer token): 431 HEADERS_TOO_LARGE', async () => {
    const r = await rawExchange(control.url, request(['GET /v1/me HTTP/1.1', 'host: x', `authorization: Bearer ${'a'.repeat(100_000)}`]));
    assertRawProblem(r, 431, 'HEADERS_TOO_LARGE');
    assert.ok(!r.body.includes('aaaa'), 'the token is not echoed');
  });

  it('a NUL in a header: 400 BAD_REQUEST naming the parser error', async () => {
    const r = await rawExchange(control.url, request(['GET /v1/me HTTP/1.1', 'host: x', 'authorization: Bearer a\0b']));
    assertRawProblem(r, 400, 'BAD_REQUEST');
    assert.match(JSON.parse(r.body).detail, /not valid HTTP\/1\.1 \(HPE_[A-Z_]+\)/);
  });

  it('a raw byte over 0x7f in the path: 400 BAD_REQUEST', async () => {
    const r = await rawExchange(control.url, request([Buffer.from([...Buffer.from('GET /v1/users/'), 0xff, ...Buffer.from(' HTTP/1.1')]), 'host: x']));
    assertRawProblem(r, 400, 'BAD_REQUEST');
  });

  it('a bad request pipelined after a good one: the good one is answered first', async () => {
    const { hostname, port } = new URL(control.url);
    const text = await new Promise<string>((resolve, reject) => {
      let out = '';
      const sock = connect(Number(port), hostname, () => sock.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /v1/me HTTP/1.1\r\nhost: x\r\nx: a\0b\r\n\r\n'));
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => (out += d));
      sock.on('error', reject);
      sock.on('close', () => resolve(out));
    });
    const second = text.indexOf('HTTP/1.1 400 ');
    assert.ok(text.startsWith('HTTP/1.1 200 OK\r\n'), text);
    assert.ok(second > 0, text);
    assert.match(text.slice(second), /"code":"BAD_REQUEST"/);
  });

  it('CONNECT: 405 METHOD_NOT_ALLOWED, where the connection was dropped without an answer', async () => {
    const r = await rawExchange(control.url, request(['CONNECT 127.0.0.1:22 HTTP/1.1', 'host: 127.0.0.1:22']));
    assertRawProblem(r, 405, 'METHOD_NOT_ALLOWED');
  });

  it('an Expect other than 100-continue: 417 EXPECTATION_FAILED', async () => {
    const r = await rawExchange(control.url, request(['GET /v1/me HTTP/1.1', 'host: x', 'expect: something-else']));
    assertRawProblem(r, 417, 'EXPECTATION_FAILED');
  });

  it('keeps serving afterwards', async () => {
    const res = await fetch(`${control.url}/healthz`);
    assert.equal(res.status, 200);
  });
});
