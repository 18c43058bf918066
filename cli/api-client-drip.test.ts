/**
 * A control plane (or whatever answers in its place) that sends its answer a byte at a time, each
 * within the 15 s between chunks that undici allows, held a request for as long as it liked (a
 * 16 MiB answer: months). Each request now has an answer deadline of its own: the answer whole
 * within it, or the replica counts as unreachable (one line, exit 5). Here the deadline is short
 * and the drip fast, and ends after 5 s: the old code, without a deadline, took the whole answer.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { ApiClient } from './api-client.js';
import { CliError, EXIT } from './errors.js';

describe('ApiClient: an answer that drips', { timeout: 30_000 }, () => {
  it('is cut off at the answer deadline: one line, exit 5', async () => {
    const drips = new Set<NodeJS.Timeout>();
    const open = new Set<ServerResponse>();
    const server = createServer((_req, res) => {
      open.add(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id":"');
      // 250 drips, then the end of the answer: the old code got it whole after 5 s (and failed), not never.
      let left = 250;
      const t = setInterval(() => (--left > 0 ? res.write('a') : (clearInterval(t), res.end('","name":"bob","role":"member"}'))), 20);
      drips.add(t);
      res.on('close', () => clearInterval(t));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const api = new ApiClient(url, undefined, {}, undefined, { answerTimeoutMs: 300 });
      await assert.rejects(api.raw('GET', '/v1/me'), (err: unknown) => {
        assert.ok(err instanceof CliError, String(err));
        assert.equal(err.exitCode, EXIT.UNREACHABLE);
        assert.equal(err.message, `cannot reach the control plane at ${url} (no whole answer within 0.3 s)`);
        return true;
      });
    } finally {
      for (const t of drips) clearInterval(t);
      for (const res of open) res.destroy();
      server.close();
    }
  });
});
