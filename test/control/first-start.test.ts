/**
 * The real `tunnel-control` binary on a first start: embedded PGlite in a temp data dir, no
 * DATABASE_URL, no master key in the environment. It prints a one-time setup code, creates the
 * admin from it, stops cleanly on SIGTERM, and on a second start over the same data dir keeps
 * its data and keys and prints no new code. Usage errors are one line and exit code 2.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JwksSchema } from '../../protocol/jwks.js';
import {
  expectStatus,
  httpCaller,
  passwordLogin,
  runControl,
  startControlProcess,
  type ControlProcess,
  type ControlRun,
} from '../harness/control.js';

const PASSWORD = 'correct horse battery staple';
// The issuer of tokens is the public URL; pin it so both runs (on different ports) share it.
const ARGS = ['--public-url', 'http://control.first-start.test'];

function explain(r: ControlRun): string {
  return `exit ${r.code} (signal ${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

describe('tunnel-control first start on the embedded database', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tunnel-first-start-'));
  const running: ControlProcess[] = [];
  let first: ControlProcess;
  let jwksBefore: unknown;
  let tokenFromFirstRun: string;

  before(async () => {
    first = await startControlProcess({ dataDir, args: ARGS });
    running.push(first);
  });

  after(async () => {
    for (const c of running) {
      await c.stop();
      c.cleanup();
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints a one-time setup code and creates a master key file with mode 0600', () => {
    assert.match(first.setupCode ?? '', /^setup_[A-Za-z0-9_-]{20,}$/, first.stderr());
    assert.match(first.stderr(), /"database":"pglite"/);
    // The generated key sits next to the data it protects, which the operator is warned about.
    assert.match(first.stderr(), /"level":"warn","msg":"created a master key/);
    assert.equal(statSync(join(dataDir, 'master.key')).mode & 0o777, 0o600);
  });

  it('publishes a lease-signing key and an SSH CA key', async () => {
    const r = expectStatus(await httpCaller(first.url)('GET', '/.well-known/jwks.json'), 200, 'jwks');
    const jwks = JwksSchema.parse(r.body);
    assert.deepEqual(jwks.keys.map((k) => k.use).sort(), ['sig', 'ssh-ca']);
    jwksBefore = r.body;
  });

  it('POST /v1/setup with the code creates the admin, once', async () => {
    const call = httpCaller(first.url);
    const bad = await call('POST', '/v1/setup', { body: { setup_code: 'setup_wrong', name: 'admin', password: PASSWORD } });
    assert.equal(bad.status, 401);
    assert.equal(bad.body.code, 'INVALID_CREDENTIALS');

    const r = expectStatus(
      await call('POST', '/v1/setup', { body: { setup_code: first.setupCode, name: 'admin', password: PASSWORD } }),
      201,
      'setup',
    );
    assert.equal(r.body.name, 'admin');
    assert.equal(r.body.role, 'admin');

    const again = await call('POST', '/v1/setup', { body: { setup_code: first.setupCode, name: 'admin2', password: PASSWORD } });
    assert.equal(again.status, 401, 'the setup code is one-time');
    assert.equal(again.body.code, 'INVALID_CREDENTIALS');

    tokenFromFirstRun = await passwordLogin(call, 'admin', PASSWORD);
    const me = expectStatus(await call('GET', '/v1/me', { token: tokenFromFirstRun }), 200, 'me');
    assert.equal(me.body.name, 'admin');
    assert.equal(me.body.role, 'admin');
  });

  it('stops on SIGTERM with exit code 0', async () => {
    const from = first.stderr().length;
    const end = await first.stop();
    assert.deepEqual(end, { code: 0, signal: null }, first.stderr());
    assert.match(first.stderr().slice(from), /"msg":"shutting down".*"signal":"SIGTERM"/);
  });

  it('a second start on the same data dir reuses the data and the keys', async () => {
    const second = await startControlProcess({ dataDir, args: ARGS });
    running.push(second);
    assert.equal(second.setupCode, null, second.stderr());
    assert.doesNotMatch(second.stderr(), /setup code|No users yet/);
    // The master key file exists now, so no new one is made.
    assert.doesNotMatch(second.stderr(), /created a master key/);

    const call = httpCaller(second.url);
    const jwks = expectStatus(await call('GET', '/.well-known/jwks.json'), 200, 'jwks after restart');
    assert.deepEqual(jwks.body, jwksBefore);

    const token = await passwordLogin(call, 'admin', PASSWORD);
    const me = expectStatus(await call('GET', '/v1/me', { token }), 200, 'me after restart');
    assert.equal(me.body.name, 'admin');
    // An access token signed by the first run still verifies: same signing key, not a new one.
    const old = expectStatus(await call('GET', '/v1/me', { token: tokenFromFirstRun }), 200, 'first-run token after restart');
    assert.equal(old.body.name, 'admin');

    const end = await second.stop();
    assert.deepEqual(end, { code: 0, signal: null }, second.stderr());
  });

  it('a start with another master key than the keys were sealed with: one line, exit 2', async () => {
    // It used to start, say ready and pass /healthz, then answer every login with a 500.
    const r = await runControl(['--listen', '127.0.0.1:0', '--data-dir', dataDir, ...ARGS], { TUNNEL_MASTER_KEY: randomBytes(32).toString('base64') }, 20_000);
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, /^tunnel-control: cannot open the signing keys in the database with this master key/m, explain(r));
    assert.doesNotMatch(r.stderr, /ready|listening/, explain(r));
  });
});

describe('tunnel-control usage errors', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tunnel-usage-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  function assertUsageError(r: ControlRun, pattern: RegExp): void {
    assert.equal(r.code, 2, explain(r));
    assert.equal(r.stdout, '', explain(r));
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line on stderr, no stack trace:\n${r.stderr}`);
    assert.match(lines[0]!, /^tunnel-control: /);
    assert.match(lines[0]!, pattern);
  }

  it('--listen nope: one line, exit 2', async () => {
    assertUsageError(await runControl(['--listen', 'nope', '--data-dir', dataDir]), /--listen .*HOST:PORT/);
  });

  it('an unknown flag: one line, exit 2', async () => {
    assertUsageError(await runControl(['--no-such-flag', '--data-dir', dataDir]), /--help/);
  });

  it('DATABASE_URL without a master key: one line, exit 2, nothing created', async () => {
    const r = await runControl(['--data-dir', join(dataDir, 'pg')], { DATABASE_URL: 'postgres://tunnel@127.0.0.1:1/tunnel' });
    assertUsageError(r, /TUNNEL_MASTER_KEY/);
    assert.throws(() => statSync(join(dataDir, 'pg')), { code: 'ENOENT' });
  });
});
