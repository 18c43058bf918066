/**
 * A Y channel open whose connection closes (or begins closing) before X answers is abandoned and
 * counted: the relay confirms Y's channel only once X's side is open, and when X's answer finds
 * Y's connection gone or closing it closes X's channel and counts
 * `tunnel_node_bridged_channels_total{outcome="abandoned"}`. A closed Y's open used to be counted
 * in no outcome (neither opened nor refused); a closing Y's (revoked, its peer not hanging up) was
 * confirmed on a socket the relay had already ended and bridged to X until the close. In-process
 * relay against the fake control plane; X and Y are ssh2 clients with certificates, X holding its
 * answer until Y is gone or closing. The same for an egress open: the relay's dial of the target
 * (a loopback server, whose connect completes at once) is held back by the relay's injected
 * egress dialer until Y is gone or closing; the connected socket is then closed, not bridged.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { dialTcp, type Dialer } from '../../node/egress/dial.js';
import type { LogLine } from '../harness/relay.js';
import { ignoreEverything, openDirect } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';

const NAME = 'hostx-abandoned';

/** The next egress dial, held: set by holdNextDial, taken by the dialer below. */
let nextDial: { connected(): void; released: Promise<void> } | undefined;

/** The relay's egress dialer: the real dial, whose answer (the connected socket) waits for a held dial's release. */
const egressDial: Dialer = async (o) => {
  const sock = await dialTcp(o);
  const held = nextDial;
  nextDial = undefined;
  if (held) {
    held.connected();
    await held.released;
  }
  return sock;
};

/** Holds the relay's next egress dial: `dialled` resolves once it is connected to the target; the relay has the socket only after `release()`. */
function holdNextDial(): { dialled: Promise<void>; release(): void } {
  let connected = () => {};
  let release = () => {};
  const dialled = new Promise<void>((resolve) => (connected = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  nextDial = { connected, released };
  return { dialled, release };
}

/** An egress target on 127.0.0.1: `closed` resolves when the first connection it took closes; stop() closes it all. */
async function egressTarget(): Promise<{ port: number; closed: Promise<void>; stop(): void }> {
  const taken: Socket[] = [];
  const server = createServer((s) => {
    taken.push(s);
    s.on('error', () => {});
    s.resume();
  });
  const closed = new Promise<void>((resolve) => server.once('connection', (s) => s.once('close', () => resolve())));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    closed,
    stop: () => {
      server.close();
      for (const s of taken) s.destroy();
    },
  };
}

describe('a Y channel open abandoned mid-open', { timeout: 60_000 }, () => {
  // Polls only when the test asks (pollRevocations).
  const t = relayUnderTest(['--revocation-poll-interval', '1h', '--revocation-wait', '0s'], { egressDial });
  const channels = (outcome: string) => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_bridged_channels_total', { outcome });

  /** X, exposing NAME; `asked()` resolves with the accept of the next forwarded open X gets. */
  async function exposer(user: string): Promise<{ asked(): Promise<() => ClientChannel> }> {
    const x = await t.member(user, { grant: { kind: 'expose', exposure: NAME, port: 22 } });
    await new Promise<void>((resolve, reject) => x.client.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    return { asked: () => new Promise((resolve) => x.client.once('tcp connection', (_info, accept) => resolve(accept))) };
  }

  /** X answers now: the relay has no Y channel to confirm, and closes X's; the open counted abandoned, not opened. */
  async function answerAbandoned(accept: () => ClientChannel, before: { abandoned: number; opened: number }, from: number): Promise<void> {
    const xch = accept().resume();
    await new Promise((resolve) => xch.once('close', resolve));
    assert.equal(channels('abandoned') - before.abandoned, 1);
    assert.equal(channels('opened') - before.opened, 0);
    assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'channel bridged').length, 0);
  }

  it("is counted as abandoned when Y's connection closed before X answered", async () => {
    const x = await exposer('x-closed');
    const asked = x.asked();
    const before = { abandoned: channels('abandoned'), opened: channels('opened') };
    const y = await t.member('y-closed', { grant: { kind: 'open', exposure: NAME } });
    openDirect(y.client, NAME, 22).catch(() => {}); // never answered: Y is gone first
    const accept = await asked;
    const from = t.relay.logger.lines.length;
    y.client.destroy();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);
    await answerAbandoned(accept, before, from);
  });

  it("is abandoned, not bridged, when Y's connection was closing (revoked, its peer not hanging up) when X answered", async () => {
    const x = await exposer('x-closing');
    const asked = x.asked();
    const before = { abandoned: channels('abandoned'), opened: channels('opened') };
    const y = await t.member('y-closing', { grant: { kind: 'open', exposure: NAME } });
    openDirect(y.client, NAME, 22).catch(() => {});
    const accept = await asked;
    ignoreEverything(y.client);
    const from = t.relay.logger.lines.length;
    t.fc.revoke(y.leaseId, y.exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === y.leaseId, 5000, from);
    await answerAbandoned(accept, before, from);
    // X answered while Y's connection was still there, closing (the relay's 2 s deadline).
    assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId).length, 0);
  });

  /** Y, with an egress lease to `port`, opens a channel to it; resolves once the relay's dial connected (its answer held). */
  async function egressOpen(user: string, port: number): Promise<{ y: Awaited<ReturnType<typeof t.member>>; release(): void; from: number }> {
    const y = await t.member(user, { grant: { kind: 'egress', targets: [{ host: '127.0.0.1', port }] } });
    const held = holdNextDial();
    const from = t.relay.logger.lines.length;
    openDirect(y.client, '127.0.0.1', port).catch(() => {}); // never answered: Y is gone or closing first
    await held.dialled;
    return { y, release: held.release, from };
  }

  /** The dial answers now: the relay has no Y channel to confirm and closes the socket; counted abandoned, not opened, nothing bridged. */
  async function dialAbandoned(release: () => void, target: { closed: Promise<void> }, before: { abandoned: number; opened: number }, from: number): Promise<void> {
    const logger = t.relay.logger;
    let onLine = (_l: LogLine) => {};
    const outcome = await new Promise<string>((resolve) => {
      onLine = (l) => l.msg === 'egress channel bridged' && resolve('bridged');
      logger.on('line', onLine);
      void target.closed.then(() => resolve('closed'));
      release();
    });
    logger.off('line', onLine);
    assert.equal(outcome, 'closed', "the relay bridged the dialled socket to Y's connection that was gone or closing");
    assert.equal(channels('abandoned') - before.abandoned, 1);
    assert.equal(channels('opened') - before.opened, 0);
    assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'egress channel bridged').length, 0);
  }

  it("an egress open is counted as abandoned, and the dialled socket closed, when Y's connection closed before the dial completed", async () => {
    const target = await egressTarget();
    try {
      const before = { abandoned: channels('abandoned'), opened: channels('opened') };
      const { y, release, from } = await egressOpen('y-egress-closed', target.port);
      y.client.destroy();
      await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);
      await dialAbandoned(release, target, before, from);
    } finally {
      target.stop();
    }
  });

  it("an egress open is abandoned, not bridged, when Y's connection was closing (revoked, its peer not hanging up) when the dial completed", async () => {
    const target = await egressTarget();
    try {
      const before = { abandoned: channels('abandoned'), opened: channels('opened') };
      const { y, release, from } = await egressOpen('y-egress-closing', target.port);
      ignoreEverything(y.client);
      t.fc.revoke(y.leaseId, y.exp);
      await t.relay.relay.pollRevocations();
      await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === y.leaseId, 5000, from);
      await dialAbandoned(release, target, before, from);
      // The dial completed while Y's connection was still there, closing (the relay's 2 s deadline).
      assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId).length, 0);
    } finally {
      target.stop();
    }
  });
});
