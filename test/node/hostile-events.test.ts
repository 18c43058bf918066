/**
 * Hostile clients, finding 4: event reporting must not wedge. 400 bind/cancel cycles by one
 * expose-lease holder, and ~450 connections while the control plane is paused (SIGSTOP), used to
 * make batches larger than control's body limit: 413 forever, a full queue, dropped events. Here
 * the real relay reports to the real control plane, and every event must reach the audit log.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'ssh2';
import { fetch } from 'undici';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { parseCertificateLine } from '../../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';
import { expectStatus } from '../harness/control.js';
import { ADMIN, startStack, type Stack } from '../harness/stack.js';
import { parsePrometheusText, type PromText } from './prom-text.js';
import { connectWithCertificate } from './ssh2-cert-client.js';
import { exchange, startHashService } from './ssh-tools.js';

const NAME = 'svc-events';

interface AuditEvent {
  type: string;
  data: Record<string, unknown>;
}

describe('hostile: event reporting under bind/cancel floods and a paused control plane', { timeout: 300_000 }, () => {
  let stack: Stack;
  let hostKeyLine: string;
  let service: Awaited<ReturnType<typeof startHashService>>;
  const clients: Client[] = [];
  const audit: AuditEvent[] = [];
  let cursor = '0';

  before(async () => {
    // 801 binds and cancels on one connection: past the default --max-forwards-per-minute (60).
    stack = await startStack({ relay: { args: ['--events-flush-interval', '200ms', '--max-forwards-per-minute', '1000'] } });
    hostKeyLine = (await loadOrCreateHostKey(stack.relay.dataDir, noopLogger)).publicKeyLine;
    service = await startHashService(1024);
    expectStatus(await api('PUT', `/v1/exposures/${NAME}`, { allow: [], node: 'relay-1' }), 201, 'create exposure');
  });

  after(async () => {
    for (const c of clients) c.destroy();
    process.kill(stack.control.pid, 'SIGCONT');
    service?.server.close();
    await stack?.stop();
  });

  const api = (method: string, path: string, body?: unknown) => stack.call(method, path, { token: stack.adminToken, body });

  async function lease(body: Record<string, unknown>): Promise<{ key: KeyObject; issued: LeaseIssued }> {
    const { privateKey } = generateKeyPairSync('ed25519');
    const r = expectStatus(await api('POST', '/v1/leases', { ...body, public_key: formatPublicKeyLine(rawPublicKey(privateKey)) }), 201, 'issue lease');
    return { key: privateKey, issued: r.body as LeaseIssued };
  }

  async function connect(l: { key: KeyObject; issued: LeaseIssued }): Promise<Client> {
    const c = await connectWithCertificate({
      port: stack.relay.sshPort,
      username: ADMIN.name,
      privateKey: l.key,
      certificate: parseCertificateLine(l.issued.certificate),
      hostKeyLine,
    });
    c.on('error', () => {});
    clients.push(c);
    return c;
  }

  async function metrics(): Promise<PromText> {
    return parsePrometheusText(await (await fetch(`http://127.0.0.1:${stack.relay.metricsPort}/metrics`)).text());
  }

  /** Reads the audit log (new pages only) until `pred` holds over everything read so far. */
  async function auditUntil(pred: (events: AuditEvent[]) => boolean, what: string, ms = 120_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (;;) {
        // A GET is safe to repeat: one retry covers a keep-alive connection the server just closed.
        const get = () => api('GET', `/v1/audit?after=${cursor}&limit=1000`);
        const r = expectStatus(await get().catch(get), 200, 'audit');
        const page = r.body.events as (AuditEvent & { id: string })[];
        audit.push(...page);
        if (page.length > 0) cursor = page[page.length - 1]!.id;
        if (r.body.next_cursor === null) break;
      }
      if (pred(audit)) return;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  /**
   * Distinct sessions (or, for exposure events, events) of `type` matching. Delivery is at least
   * once: a batch control received but answered only after the relay's request timed out (while
   * paused) is sent again, so a few events may appear twice; none may be missing.
   */
  const count = (type: string, field: string, value: string) => (events: AuditEvent[]) => {
    const hits = events.filter((e) => e.type === type && e.data[field] === value);
    return type.startsWith('relay.exposure_') ? hits.length : new Set(hits.map((e) => e.data.session_id)).size;
  };

  it('delivers every event of 400 bind/cancel cycles and ~450 connections made while control was paused', async () => {
    // X binds and cancels its exposure 400 times as fast as the relay answers.
    const xLease = await lease({ kind: 'expose', exposure: NAME, port: 22 });
    const x = await connect(xLease);
    for (let i = 0; i < 400; i++) {
      await new Promise<void>((resolve, reject) => x.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
      await new Promise<void>((resolve, reject) => x.unforwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    }
    await new Promise<void>((resolve, reject) => x.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    x.on('tcp connection', (_info, accept) => {
      const ch = accept();
      void import('node:net').then(({ connect }) => {
        const s = connect({ host: '127.0.0.1', port: service.port, allowHalfOpen: true });
        s.on('error', () => ch.destroy());
        ch.pipe(s).pipe(ch);
      });
    });
    const onlines = count('relay.exposure_online', 'exposure', NAME);
    const offlines = count('relay.exposure_offline', 'exposure', NAME);
    await auditUntil((e) => onlines(e) >= 401 && offlines(e) >= 400, 'bind/cancel events in the audit log');

    // Control stops answering; Y connects and disconnects 450 times meanwhile.
    const y = await lease({ kind: 'open', exposure: NAME });
    process.kill(stack.control.pid, 'SIGSTOP');
    try {
      for (let i = 0; i < 450; i++) {
        const c = await connect(y);
        await new Promise<void>((resolve) => {
          c.once('close', () => resolve());
          c.end();
        });
      }
      const m = await metrics();
      assert.ok(m.value('tunnel_node_events_queued') >= 900, `queued ${m.value('tunnel_node_events_queued')}`);
    } finally {
      process.kill(stack.control.pid, 'SIGCONT');
    }
    const opens = count('relay.conn_open', 'lease_id', y.issued.lease.id);
    const closes = count('relay.conn_close', 'lease_id', y.issued.lease.id);
    await auditUntil((e) => opens(e) >= 450 && closes(e) >= 450, 'connection events in the audit log');
    assert.equal(opens(audit), 450);
    assert.equal(closes(audit), 450);

    const m = await metrics();
    assert.equal(m.value('tunnel_node_events_dropped_total', { reason: 'queue_full' }), 0);
    assert.equal(m.value('tunnel_node_events_dropped_total', { reason: 'refused' }), 0);
    assert.ok(m.value('tunnel_node_events_sent_total') >= 1701);

    // And the relay still bridges a legitimate client byte-exactly.
    const yc = await connect(y);
    const ch = await new Promise<Parameters<typeof exchange>[0]>((resolve, reject) =>
      yc.forwardOut('127.0.0.1', 40000, NAME, 22, (err, c) => (err ? reject(err) : resolve(c as never))),
    );
    const r = await exchange(ch, 1 << 20);
    assert.equal(r.echoedHash, r.sentHash);
    assert.equal(r.replyBytes, 1024);
  });
});
