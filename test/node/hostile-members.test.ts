/**
 * Hostile members (h-front): what a client with a valid lease can make the relay spend.
 * - A connection that re-keys as fast as it can: each key exchange costs the relay a host-key
 *   signature and a key agreement (2.7 ms of relay CPU each, measured against an ssh2 client
 *   re-keying in a loop); nothing bounded how many a connection made. --max-rekeys-per-minute
 *   does, and a connection re-keying within it is left alone.
 * - Hosts and addresses in refused requests are the member's text, up to a packet: logged cut short.
 * - An X that cancels and binds its exposure in a loop, without waiting for the replies: each
 *   bind and cancel is an event for the control plane (exposure online, offline), and the event
 *   queue drops its oldest when full. One member made 40,000 events in 8 s and 37,000 of them,
 *   with any other member's connection events among them, were dropped. --max-forwards-per-minute
 *   bounds the port-forwarding requests of a connection. Channel opens that came in the same read
 *   as the request that ended it still reached X (ssh2 goes on parsing the read it is in): no more.
 * - Refused channel opens were each logged: a member pipelining opens to a host outside its lease,
 *   or `session` opens, made 12,000 lines (2 MB) of log a second. They are all counted, and
 *   logged at most REFUSALS_LOGGED_PER_MINUTE a minute per connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client } from 'ssh2';
import { relayUnderTest } from './relay-under-test.js';
import { REFUSALS_LOGGED_PER_MINUTE } from '../../node/forwarding/refusal-log.js';
import { sendGlobalRequest } from '../../cli/ssh/ssh2-cert-auth.js';
import { socketOfClient } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { within } from './ssh-tools.js';

const bind = (c: Client, name: string, port: number) => new Promise<boolean>((resolve) => c.forwardIn(name, port, (err) => resolve(!err)));
const unbind = (c: Client, name: string, port: number) => new Promise<boolean>((resolve) => c.unforwardIn(name, port, (err) => resolve(!err)));
const rekey = (c: Client) => (c as unknown as { _protocol: { rekey(): void } })._protocol.rekey();

describe('hostile: re-key storms', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-rekeys-per-minute', '5']);

  it('a connection that re-keys in a loop is disconnected; one that re-keys within the limit stays', async () => {
    const calm = await t.member('calm');
    let calmRekeys = 0;
    for (let i = 0; i < 4; i++) {
      const done = new Promise((r) => calm.client.once('handshake', r));
      rekey(calm.client);
      await done;
      calmRekeys++;
    }

    const storm = await t.member('storm');
    let rekeys = 0;
    storm.client.on('handshake', () => {
      rekeys++;
      if (rekeys < 1000) rekey(storm.client);
    });
    const from = t.relay.logger.lines.length;
    rekey(storm.client);
    await within(storm.closed, 30_000, 'the re-keying connection was closed');
    const line = await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === storm.leaseId, 10_000, from);
    assert.equal(line.fields.reason, 'rekey_rate');
    assert.ok(rekeys <= 6, `${rekeys} key exchanges before the disconnect`);
    assert.match(t.relay.relay.metricsText(), /tunnel_node_refused_requests_total\{type="rekey_rate"\} 1/);

    // The calm one re-keyed 4 times (under 5) and still works.
    assert.equal(calmRekeys, 4);
    const done = new Promise((r) => calm.client.once('handshake', r));
    rekey(calm.client);
    await within(done, 10_000, 'the calm connection still re-keys');
  });
});

describe('hostile: long names in refused requests', { timeout: 120_000 }, () => {
  const t = relayUnderTest();

  it('a direct-tcpip host and a tcpip-forward address of 30,000 characters are logged cut short', async () => {
    const { client: c } = await t.member('longnames');
    const since = t.relay.logger.lines.length;
    const long = 'h'.repeat(30_000);
    await new Promise<void>((resolve) => c.forwardOut('127.0.0.1', 40000, long, 22, () => resolve()));
    await new Promise<void>((resolve) => c.forwardIn(long, 22, () => resolve()));
    const refused = t.relay.logger.lines.slice(since).filter((l) => l.msg === 'request refused');
    assert.equal(refused.length, 2);
    for (const l of refused) assert.ok(JSON.stringify(l.fields).length < 2000, `a log line of ${JSON.stringify(l.fields).length} characters`);
  });
});

describe('hostile: bind and cancel floods', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-forwards-per-minute', '5']);

  it('a connection that binds and cancels its exposure in a loop is disconnected; one within the limit stays', async () => {
    const calm = await t.member('calm', { grant: { kind: 'expose', exposure: 'calm-svc', port: 22 } });
    for (let i = 0; i < 2; i++) {
      assert.equal(await bind(calm.client, 'calm-svc', 22), true);
      assert.equal(await unbind(calm.client, 'calm-svc', 22), true);
    }

    const flood = await t.member('flood', { grant: { kind: 'expose', exposure: 'flood-svc', port: 22 } });
    const from = t.relay.logger.lines.length;
    const answers = Array.from({ length: 500 }, () => [bind(flood.client, 'flood-svc', 22), unbind(flood.client, 'flood-svc', 22)]).flat();
    // Every request answered with the connection still up: nothing stopped the flood.
    await Promise.race([flood.closed, Promise.all(answers)]);
    const line = await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === flood.leaseId, 10_000, from);
    assert.equal(line.fields.reason, 'forward_rate');
    const bound = t.relay.logger.lines.slice(from).filter((l) => l.msg === 'exposure bound' || l.msg === 'exposure unbound').length;
    assert.ok(bound <= 5, `${bound} binds and cancels before the disconnect`);
    assert.match(t.relay.relay.metricsText(), /tunnel_node_refused_requests_total\{type="forward_rate"\} 1\n/);
    await within(flood.closed, 10_000, 'the flooding connection was closed');

    // The calm one made 4 requests (under 5) and still binds.
    assert.equal(await bind(calm.client, 'calm-svc', 22), true);
  });

  it('channel opens sent with the request that ends the connection reach no X', async () => {
    const x = await t.member('x-late', { grant: { kind: 'expose', exposure: 'late-svc', port: 22 } });
    let offered = 0;
    x.client.on('tcp connection', (_info, accept) => {
      offered++;
      accept().on('error', () => {});
    });
    assert.equal(await bind(x.client, 'late-svc', 22), true);
    const y = await t.member('y-late', { grant: { kind: 'open', exposure: 'late-svc' } });
    // One write, read by the relay at once: the sixth request ends the connection, five opens follow it.
    const sock = socketOfClient(y.client);
    sock.cork();
    for (let i = 0; i < 6; i++) void bind(y.client, 'not-in-lease', 22);
    for (let i = 0; i < 5; i++) y.client.forwardOut('127.0.0.1', 40000, 'late-svc', 22, () => {});
    sock.uncork();
    await within(y.closed, 10_000, 'the connection was closed');
    // What the relay sent X before answering this, X has read.
    await sendGlobalRequest(x.client, 'keepalive@openssh.com', Buffer.alloc(0));
    assert.equal(offered, 0, 'X was asked for channels of a connection the relay was closing');
  });
});

describe('hostile: floods of refused channel opens', { timeout: 120_000 }, () => {
  const t = relayUnderTest();

  it('are all counted and refused, and logged at most a minute’s worth per connection', async () => {
    const { client: c, leaseId } = await t.member('refused-flood', { grant: { kind: 'open', exposure: 'svc' } });
    const sessionId = (await t.relay.logger.waitFor((l) => l.msg === 'connection authenticated' && l.fields.leaseId === leaseId)).fields.sessionId;
    const opens = Array.from({ length: 1000 }, (_, i) => new Promise<boolean>((resolve) => c.forwardOut('127.0.0.1', 40000, '127.0.0.1', 1 + i, (err) => resolve(!err))));
    const sessions = Array.from({ length: 200 }, () => new Promise<boolean>((resolve) => c.exec('true', (err) => resolve(!err))));
    assert.deepEqual(new Set(await Promise.all([...opens, ...sessions])), new Set([false]));
    const m = parsePrometheusText(t.relay.relay.metricsText());
    assert.equal(m.value('tunnel_node_refused_requests_total', { type: 'direct-tcpip' }), 1000);
    assert.equal(m.value('tunnel_node_refused_requests_total', { type: 'session' }), 200);
    const logged = t.relay.logger.lines.filter((l) => l.fields.sessionId === sessionId && (l.msg === 'request refused' || l.msg === 'channel type refused')).length;
    // A minute's worth, and what the bucket refilled while the flood ran (far less than a minute).
    assert.ok(logged >= REFUSALS_LOGGED_PER_MINUTE && logged < 2 * REFUSALS_LOGGED_PER_MINUTE, `${logged} refusals logged of 1,200`);

    // Refusals are not a disconnect: the connection still answers (svc is offline here).
    const answered = await new Promise<string>((resolve) => c.forwardOut('127.0.0.1', 40000, 'svc', 22, (err) => resolve(err ? err.message : 'opened')));
    assert.match(answered, /exposure_offline/);
  });
});
