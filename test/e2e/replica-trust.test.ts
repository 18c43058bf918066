/**
 * A server list whose first replica shows a certificate that fails verification for a reason
 * other than the handful the clients used to recognise (here: a certificate from the right CA
 * but only for client authentication, OpenSSL's INVALID_PURPOSE). The CLI and the relay must
 * refuse in one line and send nothing to the next replica: skipping it silently would hide an
 * impostor or a broken deployment behind the next replica that happens to answer.
 * Real TLS servers on loopback with certificates made by openssl; no mock of the transport.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../../cli/run.js';
import { testContext } from '../../cli/testing/test-context.js';
import { writeCredentials } from '../../cli/settings.js';
import { ControlError, createControlClient } from '../../node/control-client.js';

let dir: string;
const servers: Server[] = [];

/** A leaf certificate for 127.0.0.1 signed by the test CA, with extra x509v3 extensions. */
function leaf(name: string, extensions: string): { key: Buffer; cert: Buffer } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const cert = join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  writeFileSync(ext, `subjectAltName=IP:127.0.0.1,DNS:localhost\n${extensions}`);
  execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext], {
    stdio: 'ignore',
  });
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

/** An HTTPS replica answering every request with `body`, counting the requests it got. */
async function replica(tls: { key: Buffer; cert: Buffer }, body: unknown): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const srv = createServer(tls, (_req, res) => {
    requests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `https://127.0.0.1:${(srv.address() as AddressInfo).port}`, requests: () => requests };
}

let bad: { url: string; requests: () => number };
let good: { url: string; requests: () => number };
let caFile: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tunnel-replica-trust-'));
  caFile = join(dir, 'ca.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', caFile, '-days', '2', '-subj', '/CN=Tunnel test CA'], {
    stdio: 'ignore',
  });
  const answer = { id: 'usr_1', name: 'bob', role: 'member', keys: [] };
  bad = await replica(leaf('client-only', 'extendedKeyUsage=clientAuth\n'), answer);
  good = await replica(leaf('server', 'extendedKeyUsage=serverAuth\n'), answer);
});

after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a replica whose certificate fails verification is refused, never skipped', () => {
  it('the good replica alone is trusted with the CA file (the setup is sound)', async () => {
    const ctx = testContext({ env: { TUNNEL_CA_FILE: caFile } });
    writeCredentials(ctx, { server: good.url, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
    const code = await run(['whoami'], ctx);
    assert.equal(code, 0, ctx.err());
  });

  it('tunnel: one line naming the replica and the certificate problem, and no request to the next replica', async () => {
    const before = good.requests();
    const ctx = testContext({ env: { TUNNEL_CA_FILE: caFile } });
    const server = `${bad.url},${good.url}`;
    writeCredentials(ctx, { server, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
    const code = await run(['whoami'], ctx);
    assert.notEqual(code, 0, `went on to the next replica: ${ctx.out()}`);
    const lines = ctx.err().trim().split('\n');
    assert.equal(lines.length, 1, ctx.err());
    assert.match(lines[0]!, /not trusted/);
    assert.match(lines[0]!, /INVALID_PURPOSE/);
    assert.ok(lines[0]!.includes(bad.url), lines[0]);
    assert.equal(good.requests(), before, 'the next replica got a request');
    assert.equal(bad.requests(), 0);
  });

  it('tunnel-node: CONTROL_UNTRUSTED, and no request to the next replica', async () => {
    const before = good.requests();
    const client = createControlClient({ baseUrl: `${bad.url},${good.url}`, nodeToken: () => 'tnl_node_x', trust: { caFile }, timeoutMs: 10_000 });
    try {
      await assert.rejects(client.fetchJwks(), (err: unknown) => err instanceof ControlError && err.code === 'CONTROL_UNTRUSTED' && /INVALID_PURPOSE/.test(err.message));
      assert.equal(good.requests(), before, 'the next replica got a request');
      assert.equal(bad.requests(), 0);
    } finally {
      await client.close();
    }
  });
});
