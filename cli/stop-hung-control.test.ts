/**
 * A control plane that accepts requests and never answers (its process stopped): Ctrl-C on
 * `tunnel open --listen`, `tunnel open --stdio`, `tunnel expose` and `tunnel login` cancels the API request in
 * flight, so the command ends with the stop rather than after the request's own timeout (15 s per
 * replica). Real loopback HTTP servers; each test's timeout is far below the client's, so before
 * the fix they failed by timing out. "At once" is an event order here, not a measured time: the
 * run ends while the server still holds the request it never answers, and the server sees that
 * request's connection close.
 */
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeCertificate, formatCertificateLine } from '../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import { ApiClient } from './api-client.js';
import { Session } from './session.js';
import { CliError, EXIT, STOPPED } from './errors.js';
import { run } from './run.js';
import { readCredentials, writeCredentials } from './settings.js';
import { tempDir } from '../shared/testing/temp-dir.js';
import { testContext } from './testing/test-context.js';

/**
 * Far below the client's 15 s request timeout: a request the stop did not cancel fails the test.
 * A stop of a lease request in flight then looks for the lease it may have issued, which the
 * hung control plane holds too, for the 3 s a stop spends on revocations at most.
 */
const TEST_TIMEOUT_MS = 8_000;

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

interface Held {
  req: IncomingMessage;
  res: ServerResponse;
  /** Resolves when the client closed the request's connection (the server never answered it). */
  closed: Promise<void>;
}

/**
 * A loopback control plane: `answer` answers what it wants to (returns true), every other request
 * is held unanswered for ever and reported through `held`.
 */
async function controlPlane(answer: (req: IncomingMessage, res: ServerResponse) => boolean = () => false) {
  const held: Held[] = [];
  const waiters: ((h: Held) => void)[] = [];
  const srv = createServer((req, res) => {
    req.resume();
    if (answer(req, res)) return;
    const h: Held = { req, res, closed: new Promise<void>((r) => res.once('close', () => r())) };
    held.push(h);
    for (const w of waiters.splice(0)) w(h);
  });
  servers.push(srv);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
    held,
    /** The next request held (or the first one already held). */
    nextHeld: (): Promise<Held> => (held.length ? Promise.resolve(held[held.length - 1]!) : new Promise((r) => waiters.push(r))),
  };
}

function loggedIn(server: string) {
  const ctx = testContext();
  writeCredentials(ctx, { server, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return ctx;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers });
  res.end(JSON.stringify(body));
  return true;
};

const t = { timeout: TEST_TIMEOUT_MS };

describe('Ctrl-C while the control plane does not answer', () => {
  it('tunnel open --listen: the lease request is cancelled, the next replica is not tried, exit 0 without a line', t, async () => {
    const a = await controlPlane();
    const b = await controlPlane();
    const ctx = loggedIn(`${a.url},${b.url}`);
    const code = run(['open', '--listen', '127.0.0.1:0', 'hostx'], ctx);
    const h = await a.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/leases');
    ctx.abort();
    assert.equal(await code, 0);
    await h.closed;
    assert.equal(h.res.writableEnded, false, 'the server never answered');
    assert.equal(b.held.length, 0, 'the other replica was not asked');
    assert.match(ctx.err(), /^Listening on 127\.0\.0\.1:\d+ for hostx \(Ctrl-C to stop\)\.\n$/);
    assert.equal(getEventListeners(ctx.stopSignal, 'abort').length, 0);
  });

  it('tunnel open --stdio: the lease request is cancelled; exit 130 (stopped) with one line', t, async () => {
    const cp = await controlPlane();
    const ctx = loggedIn(cp.url);
    const code = run(['open', '--stdio', 'hostx'], ctx);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/leases');
    ctx.abort();
    assert.equal(await code, EXIT.STOPPED);
    await h.closed;
    assert.equal(h.res.writableEnded, false);
    assert.equal(ctx.err(), `tunnel open: stopped while waiting for the control plane at ${cp.url}\n`);
  });

  it('tunnel expose: the lease request is cancelled (the exposure was answered), exit 0', t, async () => {
    const cp = await controlPlane((req, res) =>
      req.url === '/v1/exposures/hostx'
        ? json(res, 200, { name: 'hostx', owner: 'bob', allow: [], pinned_node: null, node: null, online: false, port: null, created_at: new Date().toISOString() })
        : false,
    );
    const ctx = loggedIn(cp.url);
    const code = run(['expose', '22', '--name', 'hostx'], ctx);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/leases');
    ctx.abort();
    assert.equal(await code, 0);
    await h.closed;
    assert.equal(h.res.writableEnded, false);
    assert.equal(ctx.err(), '');
  });

  it('tunnel expose: Ctrl-C while the exposure is looked up cancels that request too; exit 0 without a line, as for any stop of it', t, async () => {
    const cp = await controlPlane();
    const ctx = loggedIn(cp.url);
    const code = run(['expose', '22', '--name', 'hostx'], ctx);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'GET /v1/exposures/hostx');
    ctx.abort();
    assert.equal(await code, 0);
    await h.closed;
    assert.equal(ctx.err(), '');
  });
});

describe('Ctrl-C while a one-shot command\'s request is in flight', () => {
  const LEASE = 'lse_0123456789abcdef0123456789abcdef';
  const cases: [string[], string][] = [
    [['whoami'], 'GET /v1/me'],
    [['ls'], 'GET /v1/exposures'],
    [['ssh-config'], 'GET /v1/exposures'],
    [['nodes'], 'GET /v1/nodes'],
    [['leases'], 'GET /v1/leases?active=true'],
    [['leases', 'revoke', LEASE], `DELETE /v1/leases/${LEASE}`],
    [['exposures', 'ls'], 'GET /v1/exposures'],
    [['exposures', 'show', 'hostx'], 'GET /v1/exposures/hostx'],
    [['exposures', 'create', 'hostx'], 'PUT /v1/exposures/hostx'],
    [['exposures', 'allow', 'hostx', 'alice'], 'GET /v1/exposures/hostx'],
    [['exposures', 'rm', 'hostx'], 'DELETE /v1/exposures/hostx'],
    [['admin', 'users'], 'GET /v1/users'],
    [['admin', 'users', 'add', 'alice'], 'POST /v1/users'],
    [['admin', 'users', 'disable', 'alice'], 'DELETE /v1/users/alice'],
    [['admin', 'service-tokens'], 'GET /v1/service-tokens'],
    [['admin', 'service-tokens', 'create', 'ci', '--scope', 'expose:hostx'], 'POST /v1/service-tokens'],
    [['admin', 'service-tokens', 'revoke', 'stk_1'], 'DELETE /v1/service-tokens/stk_1'],
    [['admin', 'enroll-token', 'relay-2'], 'POST /v1/nodes/enrollment-tokens'],
    [['admin', 'egress'], 'GET /v1/egress-targets'],
    [['admin', 'egress', 'put', 'db', '--node', 'relay-1', '--host', '10.0.0.5', '--port', '5432'], 'PUT /v1/egress-targets/db'],
    [['admin', 'egress', 'rm', 'db'], 'DELETE /v1/egress-targets/db'],
  ];
  for (const [argv, request] of cases) {
    it(`tunnel ${argv.join(' ')}: ${request} is cancelled; exit 130 with the one stopped line`, t, async () => {
      const cp = await controlPlane();
      const ctx = loggedIn(cp.url);
      const code = run(argv, ctx);
      const h = await cp.nextHeld();
      assert.equal(`${h.req.method} ${h.req.url}`, request);
      ctx.abort();
      assert.equal(await code, EXIT.STOPPED, ctx.err());
      await h.closed;
      assert.equal(h.res.writableEnded, false);
      assert.equal(ctx.err(), `tunnel ${argv[0]}: stopped while waiting for the control plane at ${cp.url}\n`);
      assert.equal(getEventListeners(ctx.stopSignal, 'abort').length, 0);
    });
  }

  it('tunnel logout: the logout request is cancelled; exit 130, the credentials kept', t, async () => {
    const cp = await controlPlane();
    const ctx = loggedIn(cp.url);
    const code = run(['logout'], ctx);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/auth/logout');
    ctx.abort();
    assert.equal(await code, EXIT.STOPPED, ctx.err());
    await h.closed;
    assert.match(ctx.err(), /^tunnel logout: stopped while waiting for the control plane at [^\n]*; the control plane did not confirm that the login session ended, so the credentials are kept [^\n]*\n$/);
    assert.equal(readCredentials(ctx)?.refresh_token, 'rt');
  });
});

/**
 * A lease whose relay takes TCP connections and never says a word (a relay process stopped), and
 * a control plane that issues it and records its revocation. `connecting` resolves when the CLI
 * has connected to the relay's port and waits for its identification line.
 */
async function silentRelay() {
  const socks: Socket[] = [];
  let connected!: () => void;
  const connecting = new Promise<void>((r) => (connected = r));
  const tcp = createNetServer((s) => {
    socks.push(s);
    s.on('error', () => {});
    connected();
  });
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  after(() => {
    for (const s of socks) s.destroy();
    tcp.close();
  });
  const ca = generateKeyPairSync('ed25519');
  const user = generateKeyPairSync('ed25519');
  const now = BigInt(Math.floor(Date.now() / 1000));
  const cert = encodeCertificate({ publicKey: rawPublicKey(user.publicKey), serial: 1n, type: 'user', keyId: 'silent', principals: ['bob'], validAfter: now - 60n, validBefore: now + 600n }, ca.privateKey);
  const t0 = new Date().toISOString();
  const lease = {
    id: 'lse_0123456789abcdef0123456789abcdef', kind: 'open', user: 'bob', node: 'relay-1', exposure: 'hostx', port: 22, targets: null, ssh_key: 'ssh-ed25519 AAAA', serial: '1',
    not_before: t0, expires_at: new Date(Date.now() + 600_000).toISOString(), revoked_at: null, created_at: t0,
  };
  const issued = {
    lease, token: 'jwt', certificate: formatCertificateLine(cert),
    relay: { node_id: 'nod_1', name: 'relay-1', address: `127.0.0.1:${(tcp.address() as AddressInfo).port}`, host_key: formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey)) },
  };
  const revoked: string[] = [];
  const cp = await controlPlane((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/leases') return json(res, 201, issued);
    if (req.method === 'DELETE' && req.url?.startsWith('/v1/leases/')) {
      revoked.push(req.url.slice('/v1/leases/'.length));
      res.writeHead(204).end();
      return true;
    }
    if (req.method === 'GET' && req.url === `/v1/leases/${lease.id}`) return json(res, 200, lease);
    return false;
  });
  return { cp, leaseId: lease.id, connecting, revoked };
}

describe('Ctrl-C while the relay does not answer', () => {
  for (const argv of [['open', '--stdio', 'hostx'], ['open', '--listen', '127.0.0.1:0', 'hostx']]) {
    const stdio = argv[1] === '--stdio';
    it(`tunnel ${argv.join(' ')}: the connection attempt ends at once and the lease just issued is revoked; exit ${stdio ? '130 with one line' : '0'}`, t, async () => {
      const r = await silentRelay();
      const ctx = loggedIn(r.cp.url);
      const code = run(argv, ctx);
      await r.connecting;
      ctx.abort();
      assert.equal(await code, stdio ? EXIT.STOPPED : 0, ctx.err());
      assert.deepEqual(r.revoked, [r.leaseId]);
      if (stdio) assert.match(ctx.err(), /^tunnel open: stopped while connecting to relay relay-1 at 127\.0\.0\.1:\d+\n$/);
    });
  }
});

describe('Ctrl-C during tunnel login\'s device flow', () => {
  const device = (req: IncomingMessage, res: ServerResponse) =>
    req.url === '/v1/auth/device'
      ? json(res, 200, { device_code: 'dc', user_code: 'ABCD-EFGH', verification_uri: 'http://x/device', verification_uri_complete: 'http://x/device?c', expires_in: 600, interval: 1 })
      : false;
  const lines = (ctx: ReturnType<typeof testContext>) => ctx.err().trim().split('\n');

  it('while a poll is in flight: the poll is cancelled; exit 130 with the one stopped line, nothing stored', t, async () => {
    const cp = await controlPlane(device);
    const ctx = testContext();
    const code = run(['login', '--server', cp.url], ctx);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/auth/token');
    ctx.abort();
    assert.equal(await code, EXIT.STOPPED);
    await h.closed;
    assert.equal(h.res.writableEnded, false);
    assert.equal(lines(ctx).at(-1), `tunnel login: stopped while waiting for the control plane at ${cp.url}`);
    assert.equal(readCredentials(ctx), undefined);
    assert.equal(getEventListeners(ctx.stopSignal, 'abort').length, 0);
  });

  it('the CLI as its own process, SIGTERM while a poll is in flight: exit 130 (stopped, not 5: the control plane was there), one line', t, async () => {
    const cp = await controlPlane(device);
    const home = tempDir('tunnel-cli-');
    const main = join(import.meta.dirname, 'main.js');
    const child = spawn(process.execPath, [main, 'login', '--server', cp.url], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit');
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/auth/token');
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.deepEqual([code, signal], [EXIT.STOPPED, null], stderr);
    assert.equal(stderr.trim().split('\n').at(-1), `tunnel login: stopped while waiting for the control plane at ${cp.url}`);
  });

  it('while it waits between polls: the same line and exit code', t, async () => {
    const ctx = testContext();
    let polls = 0;
    const cp = await controlPlane((req, res) => {
      if (device(req, res)) return true;
      if (req.url !== '/v1/auth/token') return false;
      polls++;
      // Stopped as the answer goes out: the client is between polls (or just reading it).
      res.once('finish', () => ctx.abort());
      return json(res, 400, { type: 'about:blank', title: 'Bad Request', status: 400, code: 'AUTHORIZATION_PENDING', detail: 'pending', request_id: 'r' });
    });
    assert.equal(await run(['login', '--server', cp.url], ctx), EXIT.STOPPED);
    assert.equal(polls, 1);
    assert.equal(lines(ctx).at(-1), `tunnel login: stopped while waiting for the control plane at ${cp.url}`);
  });
});

describe('ApiClient: a request with a stop signal', () => {
  it('leaves no listener on a long-lived signal, whether it was answered, refused or cancelled', t, async () => {
    let n = 0;
    const cp = await controlPlane((req, res) => {
      n++;
      if (req.url === '/hang') return false;
      return n % 2 ? json(res, 200, {}) : json(res, 404, { type: 'about:blank', title: 'Not Found', status: 404, code: 'NOT_FOUND', detail: 'no', request_id: 'r' });
    });
    const api = new ApiClient(cp.url);
    const stop = new AbortController();
    for (let i = 0; i < 200; i++) {
      await api.raw('GET', `/x${i}`, { signal: stop.signal });
      assert.equal(getEventListeners(stop.signal, 'abort').length, 0);
    }
    // One request in flight holds one listener, and gives it back when cancelled.
    const hung = api.raw('GET', '/hang', { signal: stop.signal });
    const h = await cp.nextHeld();
    assert.equal(getEventListeners(stop.signal, 'abort').length, 1);
    stop.abort();
    await assert.rejects(hung, (err: unknown) => err instanceof CliError && err.code === STOPPED && err.exitCode === EXIT.STOPPED);
    await h.closed;
    assert.equal(getEventListeners(stop.signal, 'abort').length, 0);
    // Already stopped: nothing is sent.
    const before = n;
    await assert.rejects(api.raw('GET', '/x', { signal: stop.signal }), (err: unknown) => err instanceof CliError && err.code === STOPPED);
    assert.equal(n, before);
  });

  it('a stop during the wait before retrying a 503 DATABASE_UNAVAILABLE ends it: no retry', t, async () => {
    let hits = 0;
    const cp = await controlPlane((_req, res) => {
      hits++;
      return json(res, 503, { type: 'about:blank', title: 'Unavailable', status: 503, code: 'DATABASE_UNAVAILABLE', detail: 'db', request_id: 'r' }, { 'retry-after': '5' });
    });
    let noticed!: () => void;
    const waiting = new Promise<void>((r) => (noticed = r));
    // The notice is told just before the wait for the retry begins.
    const api = new ApiClient(cp.url, undefined, {}, () => noticed());
    const stop = new AbortController();
    const p = api.raw('GET', '/v1/me', { signal: stop.signal });
    await waiting;
    stop.abort();
    await assert.rejects(p, (err: unknown) => err instanceof CliError && err.code === STOPPED);
    assert.equal(hits, 1);
    assert.equal(getEventListeners(stop.signal, 'abort').length, 0);
  });
});

describe('Session: a stop during a refresh', () => {
  it('does not cancel a refresh token\'s rotation: the rotated tokens are stored although the call they were for is stopped', t, async () => {
    const cp = await controlPlane();
    const ctx = testContext();
    writeCredentials(ctx, { server: cp.url, user: 'bob', access_token: 'at1', access_expires_at: Date.now() - 1, refresh_token: 'rt1' });
    const session = Session.load(ctx, undefined);
    const stop = new AbortController();
    const call = session.call('GET', '/v1/me', null, undefined, stop.signal);
    const h = await cp.nextHeld();
    assert.equal(`${h.req.method} ${h.req.url}`, 'POST /v1/auth/token');
    stop.abort();
    // The control plane rotated the token: its answer must not be dropped, or the spent rt1 stays
    // stored and its next use past the reuse grace ends the whole login.
    json(h.res, 200, { access_token: 'at2', token_type: 'Bearer', expires_in: 600, refresh_token: 'rt2' });
    await assert.rejects(call, (err: unknown) => err instanceof CliError && err.code === STOPPED);
    assert.equal(readCredentials(ctx)?.refresh_token, 'rt2');
  });
});
