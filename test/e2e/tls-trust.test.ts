/**
 * TLS and trust on first contact, with the real binaries: tunnel-control serves HTTPS (its own
 * self-signed certificate, or files reloaded on SIGHUP), prints the pin, and the CLI and the relay
 * verify it: they talk to the right server with the pin or its CA, and refuse a server with a
 * second, wrong certificate before sending it a single request. Plain http:// to a non-loopback
 * address is refused before any connection is attempted, unless --insecure-http is given.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { run } from '../../cli/run.js';
import { testContext } from '../../cli/testing/test-context.js';
import { writeCredentials } from '../../cli/settings.js';
import { createSelfSignedCert } from '../../control/tls/self-signed.js';
import { certificatePin } from '../../protocol/tls-trust.js';
import { trustConnector } from '../../protocol/tls-trust-undici.js';
import { expectStatus, httpCaller, passwordLogin, startControlProcess, type ControlProcess } from '../harness/control.js';
import { relayNodeArgv, startRelayProcess } from '../harness/relay-process.js';
import { ADMIN } from '../harness/stack.js';
import { eventually } from '../harness/streams.js';

/** Runs tunnel-node to its exit (for refusals); the egress lock is off, the data dir fresh. */
function runNode(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tunnel-tls-node-'));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...relayNodeArgv(), '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', ...args],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dataDir, TUNNEL_EGRESS_DRIVER: 'off' }, timeout: 60_000 },
      (err, _stdout, stderr) => {
        rmSync(dataDir, { recursive: true, force: true });
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr });
      },
    );
  });
}

/** An HTTPS server with another certificate that counts the requests it gets (it must get none). */
async function impostor(): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  const wrong = createSelfSignedCert(['127.0.0.1', 'localhost'], new Date());
  let requests = 0;
  const server: Server = createHttpsServer({ cert: wrong.certPem, key: wrong.keyPem }, (_req, res) => {
    requests++;
    res.writeHead(500).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Pin of the certificate as OpenSSL computes it (the definition: SHA-256 of the DER SubjectPublicKeyInfo). */
function opensslPin(certFile: string): string {
  const pubPem = execFileSync('openssl', ['x509', '-in', certFile, '-pubkey', '-noout']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pubPem });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

describe('tunnel-control makes its own certificate (--tls self-signed)', () => {
  let control: ControlProcess;
  /** The first process, after a restart on its data dir: its cleanup removes that dir and its home. */
  let first: ControlProcess | undefined;
  before(async () => {
    control = await startControlProcess({ args: ['--tls', 'self-signed'] });
  });
  after(async () => {
    await control?.stop();
    control?.cleanup();
    first?.cleanup();
  });

  it('in its data dir, key mode 0600, and prints the pin: sha256 of the SPKI, as openssl computes it', async () => {
    assert.ok(control.url.startsWith('https://'), control.url);
    const certFile = join(control.dataDir, 'tls', 'cert.pem');
    assert.equal(statSync(join(control.dataDir, 'tls', 'key.pem')).mode & 0o777, 0o600);
    assert.match(control.pin ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(control.pin, opensslPin(certFile));
    assert.equal(control.pin, certificatePin(readFileSync(certFile, 'utf8')));
    // curl with the certificate as its CA: the names (127.0.0.1) and the chain check out.
    const out = execFileSync('curl', ['-sS', '--cacert', certFile, `${control.url}/healthz`], { encoding: 'utf8' });
    assert.match(out, /ok/);
    // Served over HTTPS, the console tells browsers to use nothing else (HSTS).
    const head = execFileSync('curl', ['-sS', '-o', '/dev/null', '-D', '-', '--cacert', certFile, `${control.url}/console/login`], { encoding: 'utf8' });
    assert.match(head, /^strict-transport-security: max-age=31536000\r?$/im);
    // The setup line printed for the operator uses the same CA file.
    assert.match(control.stderr(), new RegExp(`curl -sS --cacert ${certFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} -X POST`));
  });

  it('a second start reuses the certificate: the pin does not change', async () => {
    const pin = control.pin;
    await control.stop();
    first = control;
    control = await startControlProcess({ dataDir: first.dataDir, args: ['--tls', 'self-signed'] });
    assert.equal(control.pin, pin);
  });
});

describe('the CLI and the relay verify the control plane (pin, CA file) and refuse a wrong certificate', () => {
  let control: ControlProcess;
  let dir: string;
  let certFile: string;
  let keyFile: string;
  let adminToken: string;
  let fake: Awaited<ReturnType<typeof impostor>>;
  let setupLine: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tunnel-tls-'));
    certFile = join(dir, 'cert.pem');
    keyFile = join(dir, 'key.pem');
    const a = createSelfSignedCert(['127.0.0.1', 'localhost'], new Date());
    writeFileSync(certFile, a.certPem);
    writeFileSync(keyFile, a.keyPem, { mode: 0o600 });
    control = await startControlProcess({ args: ['--tls-cert', certFile, '--tls-key', keyFile] });
    setupLine = control.stderr();
    const call = httpCaller(control.url, control.dispatcher);
    expectStatus(await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: ADMIN.name, password: ADMIN.password } }), 201, 'setup');
    adminToken = await passwordLogin(call, ADMIN.name, ADMIN.password);
    fake = await impostor();
  });
  after(async () => {
    await fake?.close();
    await control?.stop();
    control?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tunnel login --ca-pin stores the pin; later commands verify with it', async () => {
    assert.equal(control.pin, certificatePin(readFileSync(certFile)));
    const ctx = testContext({ stdin: `${ADMIN.password}\n` });
    const code = await run(['login', '--server', control.url, '--password', '--user', ADMIN.name, '--ca-pin', control.pin!], ctx);
    assert.equal(code, 0, ctx.err());
    const cfg = JSON.parse(readFileSync(join(ctx.homeDir, '.config', 'tunnel', 'config.json'), 'utf8'));
    assert.deepEqual(cfg.servers[control.url], { ca_pin: control.pin });
    const who = testContext();
    Object.assign(who, { homeDir: ctx.homeDir, env: ctx.env });
    assert.equal(await run(['whoami'], who), 0, who.err());
    assert.match(who.out(), /^admin \(admin\)/);
  });

  it("the setup line it prints for the operator's own self-signed certificate names that file as curl's CA", () => {
    // Without --cacert the printed curl fails: "SSL certificate problem: self-signed certificate".
    const esc = certFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    assert.match(setupLine, new RegExp(`curl -sS --cacert ${esc} -X POST`));
    const out = execFileSync('curl', ['-sS', '--cacert', certFile, `${control.url}/healthz`], { encoding: 'utf8' });
    assert.match(out, /ok/);
  });

  it('tunnel login --ca-file works with the CA, and without either the self-signed server is not trusted', async () => {
    const ok = testContext({ stdin: `${ADMIN.password}\n` });
    assert.equal(await run(['login', '--server', control.url, '--password', '--user', ADMIN.name, '--ca-file', certFile], ok), 0, ok.err());
    const none = testContext({ stdin: `${ADMIN.password}\n` });
    assert.equal(await run(['login', '--server', control.url, '--password', '--user', ADMIN.name], none), 1);
    assert.match(none.err(), /^tunnel login: https:\/\/127\.0\.0\.1:\d+: the server's TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): give the CA with --ca-file, or the pin .* --ca-pin/);
    assert.equal(none.err().trim().split('\n').length, 1);
  });

  it('the CLI refuses a server with a second, wrong certificate (pin or CA) and sends it no request', async () => {
    const pinned = testContext({ stdin: `${ADMIN.password}\n` });
    assert.equal(await run(['login', '--server', fake.url, '--password', '--user', ADMIN.name, '--ca-pin', control.pin!], pinned), 1);
    assert.match(pinned.err(), /the server's certificate does not match the pin: it has sha256:[0-9a-f]{64}, expected sha256:/);
    const ca = testContext({ stdin: `${ADMIN.password}\n` });
    assert.equal(await run(['login', '--server', fake.url, '--password', '--user', ADMIN.name, '--ca-file', certFile], ca), 1);
    assert.match(ca.err(), /not trusted/);
    // A stored login whose server now shows another certificate (as after a DNS or route hijack).
    const stored = testContext({ env: { TUNNEL_CA_PIN: control.pin! } });
    writeCredentials(stored, { server: fake.url, user: 'admin', access_token: 'at', access_expires_at: Date.now() + 600_000 });
    assert.equal(await run(['whoami'], stored), 1);
    assert.match(stored.err(), /does not match the pin/);
    assert.equal(fake.requests(), 0, 'the impostor got a request');
  });

  it('the relay enrolls with --ca-pin, stores it, starts again without it, and refuses the wrong certificate', async () => {
    const call = httpCaller(control.url, control.dispatcher);
    const token = async (name: string) =>
      expectStatus(await call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name } }), 201, 'enrollment token').body.token as string;

    // The impostor: enrollment fails before the token is sent.
    const refused = await runNode(['--control-url', fake.url, '--ca-pin', control.pin!, '--enroll-token', await token('relay-x')]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /tunnel-node: control plane not trusted: the server's certificate does not match the pin/);
    // ... and with the real certificate as its CA file.
    const refusedCa = await runNode(['--control-url', fake.url, '--ca-file', certFile, '--enroll-token', await token('relay-w')]);
    assert.equal(refusedCa.code, 1, refusedCa.stderr);
    assert.match(refusedCa.stderr, /tunnel-node: control plane not trusted/);
    const noTrust = await runNode(['--control-url', control.url, '--enroll-token', await token('relay-y')]);
    assert.equal(noTrust.code, 1, noTrust.stderr);
    assert.match(noTrust.stderr, /not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
    assert.equal(fake.requests(), 0, 'the impostor got a request');

    const relay = await startRelayProcess({ controlUrl: control.url, enrollToken: await token('relay-1'), args: ['--ca-pin', control.pin!] });
    try {
      const state = JSON.parse(readFileSync(join(relay.dataDir, 'node.json'), 'utf8'));
      assert.equal(state.ca_pin, control.pin);
      await relay.stop();
      const lastSeen = async () =>
        expectStatus(await call('GET', '/v1/nodes', { token: adminToken }), 200, 'nodes').body.nodes.find((n: { name: string }) => n.name === 'relay-1')
          ?.last_seen_at as string;
      const seenBefore = await lastSeen();
      // Second start: no --ca-pin, no token; the stored pin verifies the control plane, whose
      // next heartbeat arrives.
      const again = await startRelayProcess({ controlUrl: control.url, dataDir: relay.dataDir });
      await eventually(async () => assert.notEqual(await lastSeen(), seenBefore), 30_000);
      assert.doesNotMatch(again.stderr(), /heartbeat failed|not trusted/);
      await again.stop();
    } finally {
      relay.cleanup();
      rmSync(relay.dataDir, { recursive: true, force: true });
    }
  });

  it('SIGHUP reloads the certificate files without a restart: new connections see the new key', async () => {
    const before = control.pin!;
    const b = createSelfSignedCert(['127.0.0.1', 'localhost'], new Date());
    const pinB = certificatePin(b.certPem);
    writeFileSync(join(dir, 'cert-b.pem'), b.certPem);
    writeFileSync(join(dir, 'key-b.pem'), b.keyPem, { mode: 0o600 });
    // Replace key then certificate, the way certbot's renewal does (each atomically).
    copyFileSync(join(dir, 'key-b.pem'), `${keyFile}.new`);
    execFileSync('mv', [`${keyFile}.new`, keyFile]);
    copyFileSync(join(dir, 'cert-b.pem'), `${certFile}.new`);
    execFileSync('mv', [`${certFile}.new`, certFile]);
    const from = control.stderr().length;
    process.kill(control.pid, 'SIGHUP');
    await control.waitForStderr(/"msg":"TLS certificate reloaded"/, from, 15_000);
    const healthz = async (pin: string) => {
      const agent = new Agent({ connect: trustConnector({ caPin: pin }, 10_000) });
      try {
        const res = await undiciFetch(`${control.url}/healthz`, { dispatcher: agent });
        return res.status;
      } catch (err) {
        return String((err as Error).cause ?? err);
      } finally {
        await agent.close();
      }
    };
    assert.equal(await healthz(pinB), 200);
    assert.match(String(await healthz(before)), /does not match the pin/);
    assert.match(control.stderr().slice(from), new RegExp(`"pin":"${pinB}"`));
  });

  it('a broken certificate file on reload keeps the current one', async () => {
    writeFileSync(certFile, 'not a certificate\n');
    const from = control.stderr().length;
    process.kill(control.pid, 'SIGHUP');
    await control.waitForStderr(/"msg":"TLS reload failed; still serving the previous certificate"/, from, 15_000);
    const res = await undiciFetch(`${control.url}/healthz`, { dispatcher: new Agent({ connect: trustConnector({ caPin: certificatePin(readFileSync(join(dir, 'cert-b.pem'))) }, 10_000) }) });
    assert.equal(res.status, 200);
  });

  it('a changed certificate file is picked up without a signal (polled every 10 s)', async () => {
    const c = createSelfSignedCert(['127.0.0.1'], new Date());
    const from = control.stderr().length;
    writeFileSync(`${keyFile}.new`, c.keyPem, { mode: 0o600 });
    execFileSync('mv', [`${keyFile}.new`, keyFile]);
    writeFileSync(`${certFile}.new`, c.certPem);
    execFileSync('mv', [`${certFile}.new`, certFile]);
    await control.waitForStderr(new RegExp(`"msg":"TLS certificate reloaded".*"pin":"${certificatePin(c.certPem)}"`), from, 40_000);
  });
});

describe('plain http:// to a non-loopback address', () => {
  it('the CLI refuses it before any connection is attempted, and allows it loudly with --insecure-http', async () => {
    let attempts = 0;
    const counting = new Agent({
      connect: (_opts, cb) => {
        attempts++;
        cb(Object.assign(new Error('test: no network'), { code: 'ECONNREFUSED' }), null);
      },
    });
    const ctx = testContext({ dispatcher: counting, stdin: 'pw\n' });
    assert.equal(await run(['login', '--server', 'http://192.0.2.1:8080', '--password', '--user', 'admin'], ctx), 2);
    assert.match(ctx.err(), /^tunnel login: refusing plain http:\/\/ to 192\.0\.2\.1:8080: .* --insecure-http to accept the risk\n$/);
    assert.equal(attempts, 0);

    const loud = testContext({ dispatcher: counting, stdin: 'pw\n' });
    assert.equal(await run(['login', '--server', 'http://192.0.2.1:8080', '--password', '--user', 'admin', '--insecure-http'], loud), 5);
    assert.match(loud.err(), /^tunnel: WARNING: --insecure-http: talking to http:\/\/192\.0\.2\.1:8080 over plain HTTP/);
    assert.equal(attempts, 1, 'with --insecure-http the CLI does try');
    await counting.close();
  });

  it('the relay refuses it at start (exit 2, nothing contacted), and warns with --insecure-http', async () => {
    const r = await runNode(['--control-url', 'http://192.0.2.1:8080', '--enroll-token', 'x']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^tunnel-node: --control-url: refusing plain http:\/\/ to 192\.0\.2\.1:8080: .*--insecure-http/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});

describe('a CA file the relay cannot read', () => {
  it('missing, or a FIFO: exit 2 and the reason in one line, no request (an internal error with a stack, or hung on a FIFO, before)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunnel-tls-ca-'));
    try {
      const fifo = join(dir, 'ca.pem');
      execFileSync('mkfifo', [fifo]);
      for (const [file, why] of [
        [join(dir, 'none.pem'), 'ENOENT'],
        [fifo, 'a pipe or FIFO, not a regular file: save the certificates to a file and give its path'],
      ] as const) {
        const r = await runNode(['--control-url', 'https://127.0.0.1:9', '--enroll-token', 'x', '--ca-file', file]);
        assert.equal(r.code, 2, r.stderr);
        assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
        assert.ok(r.stderr.endsWith(`\ntunnel-node: cannot read the CA file ${file} (${why})\n`), r.stderr);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
