/**
 * Several control-plane replicas in one server string (`https://a,https://b`): the CLI goes on to
 * the next replica when one cannot be reached, retries while a replica answers 503
 * DATABASE_UNAVAILABLE (its database restarting), and otherwise says what failed in one line.
 * Real loopback HTTP servers, no mocks of the transport.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { run } from './run.js';
import { EXIT } from './errors.js';
import { testContext } from './testing/test-context.js';
import { resolveServer, writeCredentials } from './settings.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A loopback HTTP server answering GET /v1/me with `answers` in turn (the last one repeats). */
async function replica(answers: { status: number; body: unknown; headers?: Record<string, string> }[]): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const srv = createServer((req, res) => {
    const a = answers[Math.min(hits, answers.length - 1)]!;
    hits++;
    res.writeHead(a.status, { 'content-type': a.status >= 400 ? 'application/problem+json' : 'application/json', ...a.headers });
    res.end(JSON.stringify(a.body));
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, hits: () => hits };
}

/** A loopback URL where nothing listens (connection refused). */
async function deadUrl(): Promise<string> {
  const srv = createTcpServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

const ME = { status: 200, body: { id: 'usr_1', name: 'bob', role: 'member' } };
const UNAVAILABLE = {
  status: 503,
  body: { type: 'x', title: 'Database unavailable', status: 503, code: 'DATABASE_UNAVAILABLE', detail: 'the control plane cannot reach its database; retry shortly', request_id: 'r' },
  headers: { 'retry-after': '1' },
};

function loggedIn(server: string) {
  const ctx = testContext();
  writeCredentials(ctx, { server, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return ctx;
}

describe('several control-plane replicas in one server string', () => {
  it('a replica that refuses connections is skipped: the request goes to the next one', async () => {
    const live = await replica([ME]);
    const ctx = loggedIn(`${await deadUrl()},${live.url}`);
    assert.equal(await run(['whoami'], ctx), 0, ctx.err());
    assert.match(ctx.out(), /^bob \(member\)/);
    assert.equal(live.hits(), 1);
  });

  it('every replica down: exit 5 and one line naming each', async () => {
    const [a, b] = [await deadUrl(), await deadUrl()];
    const ctx = loggedIn(`${a},${b}`);
    assert.equal(await run(['whoami'], ctx), EXIT.UNREACHABLE);
    const lines = ctx.err().trim().split('\n');
    assert.equal(lines.length, 1, ctx.err());
    assert.match(lines[0]!, /cannot reach the control plane at any of /);
    assert.ok(lines[0]!.includes(a) && lines[0]!.includes(b), lines[0]);
  });

  it('503 DATABASE_UNAVAILABLE is retried after Retry-After until the database is back', async () => {
    const live = await replica([UNAVAILABLE, UNAVAILABLE, ME]);
    const ctx = loggedIn(live.url);
    assert.equal(await run(['whoami'], ctx), 0, ctx.err());
    assert.equal(live.hits(), 3);
    assert.equal(ctx.err(), 'tunnel: the control plane cannot reach its database; retrying for up to 30 s\n');
  });

  it('other 5xx answers are not retried: one line, exit 5', async () => {
    const live = await replica([{ status: 500, body: { type: 'x', title: 'x', status: 500, code: 'INTERNAL', detail: 'internal error', request_id: 'r' } }]);
    const ctx = loggedIn(live.url);
    assert.equal(await run(['whoami'], ctx), EXIT.UNREACHABLE);
    assert.equal(live.hits(), 1);
    assert.equal(ctx.err().trim().split('\n').length, 1, ctx.err());
  });

  it('the list is normalized and each URL checked', () => {
    const ctx = testContext();
    assert.equal(resolveServer(ctx, 'https://a.example:8443/, https://b.example:8443'), 'https://a.example:8443,https://b.example:8443');
    assert.throws(() => resolveServer(ctx, 'https://a.example,not a url'), /not a URL/);
    assert.throws(() => resolveServer(ctx, 'https://a.example,ftp://b.example'), /must be http/);
  });

  it('a malformed or oversized entry is refused in one short line (the entry quoted, never echoed whole)', async () => {
    const long = `https://${'a'.repeat(5000)}.example`;
    for (const server of ['https://a.example,foo\nbar', 'https://a.example,ftp://x\ny', long, `https://a.example,${long}`, 'https://a.example,,https://b.example']) {
      const ctx = testContext();
      assert.equal(await run(['login', '--server', server], ctx), EXIT.USAGE, server.slice(0, 80));
      const err = ctx.err().trim();
      assert.equal(err.split('\n').length, 1, err);
      assert.ok(err.length < 300, `${err.length} characters`);
    }
  });
});
