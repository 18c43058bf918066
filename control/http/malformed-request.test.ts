/**
 * The refusal of a bad request pipelined after good ones (http/malformed-request.ts) follows the
 * answers of all of them, on a real Node HTTP server: when the first is answered, Node hands the
 * socket to the next, which may still be computing its answer.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { answerMalformedRequests } from './malformed-request.js';

describe('answerMalformedRequests, pipelined', () => {
  let server: Server;
  let releaseSecond: () => void = () => undefined;
  const second = new Promise<void>((resolve) => (releaseSecond = resolve));
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/first') res.end('first');
      // The second answers only once the client has read the first's answer.
      else void second.then(() => res.end('second'));
    });
    answerMalformedRequests(server, () => `req_${'0'.repeat(32)}`);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    releaseSecond();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('answers every request before the bad one, then refuses it', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      let out = '';
      const sock = connect((server.address() as AddressInfo).port, '127.0.0.1', () =>
        sock.write('GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\n\r\nGET /bad HTTP/1.1\r\nhost: x\r\nx: a\0b\r\n\r\n'),
      );
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        out += d;
        if (out.includes('\r\n\r\nfirst')) releaseSecond();
      });
      sock.on('error', reject);
      sock.on('close', () => resolve(out));
    });
    const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/).map((a) => /"code":"([A-Z_]+)"/.exec(a)?.[1] ?? a.slice(a.lastIndexOf('\r\n\r\n') + 4));
    assert.deepEqual(answers, ['first', 'second', 'BAD_REQUEST'], text);
  });

  it('answers a request before a CONNECT, then refuses the CONNECT', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      let out = '';
      const sock = connect((server.address() as AddressInfo).port, '127.0.0.1', () =>
        sock.write('GET /second HTTP/1.1\r\nhost: x\r\n\r\nCONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\n'),
      );
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => (out += d));
      sock.on('error', reject);
      sock.on('close', () => resolve(out));
    });
    const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/).map((a) => /"code":"([A-Z_]+)"/.exec(a)?.[1] ?? a.slice(a.lastIndexOf('\r\n\r\n') + 4));
    assert.deepEqual(answers, ['second', 'METHOD_NOT_ALLOWED'], text);
  });
});
