/**
 * The real relay binary against the real control plane binary, on loopback, with the real
 * OpenSSH client: enrollment with a one-time token, heartbeats, the JWKS cache on disk,
 * control-issued leases, revocation through the API, connection events in the audit log,
 * exposure status, and a relay that keeps deciding correctly while the control plane is down.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fetch } from 'undici';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { encodeCertificate, parseCertificate, parseCertificateLine } from '../../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';
import { expectStatus } from '../harness/control.js';
import { relayNodeArgv, startRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { ADMIN, startStack, type Stack } from '../harness/stack.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, streamHash, within, writeCert, type ClientFiles, type Proc } from '../node/ssh-tools.js';

const NAME = 'svc-e2e';
const REPLY = 512;

/** Polls `probe` until it returns a value (not undefined); bounded by `ms`. */
async function eventually<T>(probe: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface AuditEvent {
  id: string;
  type: string;
  subject: string | null;
  data: Record<string, unknown>;
}

describe('relay and control plane (real binaries, loopback)', () => {
  let stack: Stack;
  let relay: RelayProcess;
  let hostKeyLine: string;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let xFiles: ClientFiles;
  let yLeaseId = '';
  const extraRelays: RelayProcess[] = [];
  const dirs: string[] = [];

  before(async () => {
    stack = await startStack();
    relay = stack.relay;
    hostKeyLine = (await loadOrCreateHostKey(relay.dataDir, noopLogger)).publicKeyLine;
    service = await startHashService(REPLY);
  });

  after(async () => {
    killAll();
    service?.server.close();
    for (const r of extraRelays) {
      await r.stop('SIGKILL');
      r.cleanup();
    }
    await stack?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const api = (method: string, path: string, body?: unknown) => stack.call(method, path, { token: stack.adminToken, body });

  /** Issues a lease through POST /v1/leases for a fresh key; returns the key, the files for ssh and the lease. */
  async function lease(body: Record<string, unknown>): Promise<{ files: ClientFiles; key: KeyObject; issued: LeaseIssued }> {
    const files = await clientFiles(relay.sshPort, hostKeyLine);
    const r = expectStatus(await api('POST', '/v1/leases', { ...body, public_key: formatPublicKeyLine(rawPublicKey(files.privateKey)) }), 201, 'issue lease');
    const issued = r.body as LeaseIssued;
    await writeCert(files, parseCertificateLine(issued.certificate));
    return { files, key: files.privateKey, issued };
  }

  function exposeX(files: ClientFiles): Proc {
    return spawnSsh(sshArgs(files, relay.sshPort, ADMIN.name, { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
  }

  /** Y through `ssh -W`: sends bytes, checks X's service saw them all and its reply came back. */
  async function yRoundTrip(files: ClientFiles): Promise<void> {
    const p = spawnSsh(sshArgs(files, relay.sshPort, ADMIN.name, { extra: ['-W', `${NAME}:22`] }));
    const r = await within(exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), 64 * 1024), 20_000, 'ssh -W exchange');
    assert.equal(r.echoedHash, r.sentHash, p.stderr());
    assert.equal(r.replyHash, streamHash(REPLY));
    assert.equal(await p.exited, 0, p.stderr());
  }

  async function yRefused(files: ClientFiles): Promise<void> {
    const p = spawnSsh(sshArgs(files, relay.sshPort, ADMIN.name, { extra: ['-W', `${NAME}:22`] }));
    p.child.stdin?.end();
    assert.equal(await within(p.exited, 20_000, 'refused ssh exits'), 255);
    assert.match(p.stderr(), /Permission denied \(publickey\)/);
  }

  async function nodes(): Promise<{ name: string; id: string; online: boolean; host_key: string; address: string; last_seen_at: string | null }[]> {
    return expectStatus(await api('GET', '/v1/nodes'), 200, 'list nodes').body.nodes;
  }

  async function auditEvents(): Promise<AuditEvent[]> {
    const all: AuditEvent[] = [];
    let after: string | null = '0';
    for (let page = 0; page < 50 && after !== null; page++) {
      const r = expectStatus(await api('GET', `/v1/audit?after=${after}&limit=1000`), 200, 'audit');
      all.push(...(r.body.events as AuditEvent[]));
      after = r.body.next_cursor as string | null;
    }
    return all;
  }

  it('enrolls a relay with a one-time token, and a second use of the token fails', async () => {
    const token = await stack.enrollmentToken('relay-2');
    const second = await startRelayProcess({ controlUrl: stack.control.url, enrollToken: token });
    extraRelays.push(second);
    const listed = (await nodes()).find((n) => n.name === 'relay-2');
    assert.equal(listed?.id, second.nodeId);
    assert.equal(listed?.host_key.split(' ').slice(0, 2).join(' '), (await loadOrCreateHostKey(second.dataDir, noopLogger)).publicKeyLine);
    assert.deepEqual(await second.stop(), { code: 0, signal: null });

    const dataDir = mkdtempSync(join(tmpdir(), 'tunnel-node-reuse-'));
    dirs.push(dataDir);
    const reuse = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [...relayNodeArgv(), '--control-url', stack.control.url, '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--enroll-token', token],
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dataDir, TUNNEL_EGRESS_DRIVER: 'off' }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    assert.equal(reuse.code, 1, reuse.stderr);
    const failed = reuse.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'enrollment failed');
    assert.equal(failed?.problemCode, 'INVALID_CREDENTIALS', reuse.stderr);
    assert.equal((await nodes()).filter((n) => n.name === 'relay-2').length, 1);
  });

  it('is online in GET /v1/nodes because it sends heartbeats (a node that never did is not)', async () => {
    const silentToken = await stack.enrollmentToken('relay-silent');
    const silentKey = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey));
    expectStatus(await stack.call('POST', '/v1/nodes/enroll', { body: { token: silentToken, host_key: silentKey, address: '127.0.0.1:1' } }), 201, 'enroll silent node');
    const list = await nodes();
    const self = list.find((n) => n.name === 'relay-1');
    assert.equal(self?.id, relay.nodeId);
    assert.equal(self?.online, true);
    assert.notEqual(self?.last_seen_at, null);
    assert.equal(self?.address, `127.0.0.1:${relay.sshPort}`);
    assert.equal(self?.host_key.split(' ').slice(0, 2).join(' '), hostKeyLine);
    const silent = list.find((n) => n.name === 'relay-silent');
    assert.equal(silent?.online, false);
    assert.equal(silent?.last_seen_at, null);
  });

  it('fetches the JWKS from the control plane and keeps it on disk', async () => {
    const published = (await (await fetch(`${stack.control.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string; use: string }[] };
    const cached = JSON.parse(readFileSync(join(relay.dataDir, 'jwks.json'), 'utf8')) as { fetched_at: string; jwks: { keys: { kid: string; use: string }[] } };
    const kids = (keys: { kid: string; use: string }[]) => keys.map((k) => `${k.use}:${k.kid}`).sort();
    assert.deepEqual(kids(cached.jwks.keys), kids(published.keys));
    assert.ok(published.keys.some((k) => k.use === 'ssh-ca') && published.keys.some((k) => k.use === 'sig'));
    assert.ok(!Number.isNaN(Date.parse(cached.fetched_at)));
    const health = (await (await fetch(`http://127.0.0.1:${relay.metricsPort}/healthz`)).json()) as { jwks: { source: string; keys: number } };
    assert.deepEqual(health.jwks.source, 'network');
    assert.equal(health.jwks.keys, published.keys.length);
  });

  it('accepts control-issued leases with the real ssh client, and the exposure shows online in GET /v1/exposures', async () => {
    expectStatus(await api('PUT', `/v1/exposures/${NAME}`, { allow: [], node: 'relay-1' }), 201, 'create exposure');
    const x = await lease({ kind: 'expose', exposure: NAME, port: 22 });
    assert.equal(x.issued.relay.node_id, relay.nodeId);
    assert.equal(x.issued.relay.address, `127.0.0.1:${relay.sshPort}`);
    xFiles = x.files;
    const p = exposeX(xFiles);
    await p.waitStderr(/remote forward success/);

    const online = await eventually(
      async () => {
        const list = expectStatus(await api('GET', '/v1/exposures'), 200, 'list exposures').body.exposures as { name: string; online: boolean; node: string | null; port: number | null }[];
        const e = list.find((v) => v.name === NAME);
        return e?.online ? e : undefined;
      },
      10_000,
      'exposure online in GET /v1/exposures',
    );
    assert.deepEqual({ node: online.node, port: online.port }, { node: 'relay-1', port: 22 });

    const y = await lease({ kind: 'open', exposure: NAME });
    yLeaseId = y.issued.lease.id;
    await yRoundTrip(y.files);
  });

  it('closes a live connection within 5 s of DELETE /v1/leases/{id}', async () => {
    const y = await lease({ kind: 'open', exposure: NAME });
    const p = spawnSsh(sshArgs(y.files, relay.sshPort, ADMIN.name, { extra: ['-v', '-N'] }));
    await p.waitStderr(/Entering interactive session/);
    const revoked = expectStatus(await api('DELETE', `/v1/leases/${y.issued.lease.id}`), 200, 'revoke');
    assert.notEqual(revoked.body.revoked_at, null);
    await within(p.exited, 5000, 'revoked connection closed');
    await relay.waitForStderr(new RegExp(`"msg":"closing connection".*"reason":"lease_revoked".*"leaseId":"${y.issued.lease.id}"`), 0, 5000);
  });

  it('reports connection and exposure events to GET /v1/audit', async () => {
    const found = await eventually(
      async () => {
        const events = await auditEvents();
        const open = events.find((e) => e.type === 'relay.conn_open' && e.subject === yLeaseId);
        const close = events.find((e) => e.type === 'relay.conn_close' && e.subject === yLeaseId);
        const online = events.find((e) => e.type === 'relay.exposure_online' && e.subject === NAME);
        return open && close && online ? { open, close, online } : undefined;
      },
      10_000,
      "Y's connection events in the audit log",
    );
    assert.equal(found.close.data.node, 'relay-1');
    assert.equal(found.close.data.bytes_in, 64 * 1024);
    assert.equal(found.close.data.bytes_out, 65 + REPLY);
    assert.equal(found.online.data.port, 22);
    assert.doesNotMatch(JSON.stringify(found), /eyJ/, 'a token reached the audit log');
  });

  it('with the control plane stopped, accepts a valid certificate issued before and refuses a bad one, also after a restart', async () => {
    const good = await lease({ kind: 'open', exposure: NAME });
    const other = await lease({ kind: 'open', exposure: NAME });
    const rogueCa = generateKeyPairSync('ed25519').privateKey;
    const rogue = encodeCertificate(parseCertificate(parseCertificateLine(other.issued.certificate)), rogueCa);
    await writeCert(other.files, rogue);

    assert.equal((await stack.control.stop()).code, 0);
    await yRoundTrip(good.files);
    await yRefused(other.files);

    // A relay started while the control plane is down verifies from its disk copy.
    assert.deepEqual(await relay.stop(), { code: 0, signal: null });
    relay = await startRelayProcess({ controlUrl: stack.control.url, dataDir: relay.dataDir, sshPort: relay.sshPort, metricsPort: relay.metricsPort });
    extraRelays.unshift(relay);
    const health = (await (await fetch(`http://127.0.0.1:${relay.metricsPort}/healthz`)).json()) as { ok: boolean; jwks: { source: string } };
    assert.deepEqual({ ok: health.ok, source: health.jwks.source }, { ok: true, source: 'disk' });
    const p = exposeX(xFiles);
    await p.waitStderr(/remote forward success/);
    await yRoundTrip(good.files);
    await yRefused(other.files);
    await relay.waitForStderr(/"msg":"authentication refused".*"reason":"ca_untrusted"/);
  });
});
