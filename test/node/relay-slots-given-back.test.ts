/**
 * A channel that is not bridged after all gives back the places it took: the member's channel
 * (--max-channels-per-member) and X's channel slot (--max-channels-per-connection). Only a
 * bridge's close gave them back, so a bridge that failed to set up (a throw after its places were
 * taken: ssh2 internals changed, any callback on the way) held them for ever; and X's channel of
 * an abandoned open (Y gone before X answered) was closed unread, so it never emitted 'close',
 * where X's connection gives its slot back. Faults are injected with --test-fault on the
 * connections of user `fault-POINT` (node/fault-guard.ts). And Y's CLOSE gives back its slot on
 * Y's connection then, not at ssh2's 'close' a few ticks later, which refused an open that came
 * in the same read at the limit.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { openDirect, socketOfClient } from './hostile-clients.js';
import { relayUnderTest } from './relay-under-test.js';

/** X: binds `exposure` and accepts every channel (read and dropped, so that it can close), handing each to `accepted`. */
async function exposeAccepting(client: Client, exposure: string, accepted: (ch: ClientChannel) => void = () => {}): Promise<void> {
  client.on('tcp connection', (_info, accept) => accepted(accept().resume()));
  await new Promise<void>((resolve, reject) => client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

/**
 * A global request X sends and the relay refuses: once its answer is back, the relay has read
 * everything X sent before it (one connection's packets are read in order).
 */
function roundTrip(x: Client): Promise<void> {
  return new Promise((resolve) => x.forwardIn('not-in-lease', 22, () => resolve()));
}

/** `p`, or a failure saying `what` did not happen within `ms` (a bound, not a synchronisation). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => 'opened',
    (err: Error) => err.message,
  );

describe("a bridge that throws while it is set up gives back the member's channel", { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-channels-per-member', '1', '--test-fault', 'bridge-open']);

  it("the member's next channel, on another connection, opens", async () => {
    await exposeAccepting((await t.member('owner', { grant: { kind: 'expose', exposure: 'sink-m', port: 22 } })).client, 'sink-m');
    const failing = await t.member('fault-bridge-open', { grant: { kind: 'open', exposure: 'sink-m' }, userId: 'usr_hog' });
    await refusal(openDirect(failing.client, 'sink-m', 22)); // confirmed, then the connection is closed: either is fine
    await failing.closed;
    const faults = t.relay.relay.metricsText();
    assert.match(faults, /^tunnel_node_handler_faults_total\{where="tcpip-open"\} 1$/m);

    const next = await t.member('hog', { grant: { kind: 'open', exposure: 'sink-m' } });
    assert.equal(await refusal(openDirect(next.client, 'sink-m', 22)), 'opened');
  });
});

describe('a channel whose setup throws gives back its slot on X', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-channels-per-connection', '1', '--test-fault', 'bridge-open,forward-open', '--open-timeout', '30s']);

  it("Y's bridge throws: X's channel is closed and its slot taken by the next open", async () => {
    let firstX: (ch: ClientChannel) => void = () => {};
    const xAccepted = new Promise<ClientChannel>((resolve) => (firstX = resolve));
    const x = await t.member('owner', { grant: { kind: 'expose', exposure: 'sink-x', port: 22 } });
    await exposeAccepting(x.client, 'sink-x', (ch) => firstX(ch));
    const failing = await t.member('fault-bridge-open', { grant: { kind: 'open', exposure: 'sink-x' } });
    await refusal(openDirect(failing.client, 'sink-x', 22));
    const xch = await xAccepted;
    firstX = () => {};
    await within(new Promise((resolve) => xch.once('close', resolve)), 10_000, "X's channel of the failed bridge closed");
    await roundTrip(x.client);

    const next = await t.member('user', { grant: { kind: 'open', exposure: 'sink-x' } });
    assert.equal(await refusal(openDirect(next.client, 'sink-x', 22)), 'opened');
  });

  it("X's side throws once X confirmed: Y's open fails at once, not at --open-timeout", async () => {
    const x = await t.member('fault-forward-open', { grant: { kind: 'expose', exposure: 'sink-f', port: 22 } });
    await exposeAccepting(x.client, 'sink-f');
    const y = await t.member('user', { grant: { kind: 'open', exposure: 'sink-f' } });
    const refused = await within(refusal(openDirect(y.client, 'sink-f', 22)), 20_000, "Y's open answered");
    assert.match(refused, /refused the channel/);
    await x.closed; // the throw is a fault of X's connection
    assert.match(t.relay.relay.metricsText(), /^tunnel_node_handler_faults_total\{where="forward-open"\} 1$/m);
  });
});

describe("an open abandoned mid-open, or answered late, gives back X's slot", { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--max-channels-per-connection', '1', '--open-timeout', '1s']);

  it("X answers after Y is gone: X's channel is closed and its slot taken by the next open", async () => {
    const x = await t.member('owner', { grant: { kind: 'expose', exposure: 'sink-a', port: 22 } });
    const asked = new Promise<() => ClientChannel>((resolve) => x.client.once('tcp connection', (_info, accept) => resolve(accept)));
    await new Promise<void>((resolve, reject) => x.client.forwardIn('sink-a', 22, (err) => (err ? reject(err) : resolve())));
    const gone = await t.member('user', { grant: { kind: 'open', exposure: 'sink-a' } });
    openDirect(gone.client, 'sink-a', 22).catch(() => {}); // never answered: Y is gone first
    const accept = await asked;
    const from = t.relay.logger.lines.length;
    gone.client.destroy();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === gone.leaseId, 10_000, from);
    const xch = accept().resume();
    await within(new Promise((resolve) => xch.once('close', resolve)), 10_000, "X's channel of the abandoned open closed");
    await roundTrip(x.client);

    x.client.on('tcp connection', (_info, acc) => acc().resume());
    const next = await t.member('user', { grant: { kind: 'open', exposure: 'sink-a' } });
    assert.equal(await refusal(openDirect(next.client, 'sink-a', 22)), 'opened');
  });

  it("X answers after --open-timeout: X's late channel is closed and its slot taken by the next open", async () => {
    const x = await t.member('owner', { grant: { kind: 'expose', exposure: 'sink-l', port: 22 } });
    const asked = new Promise<() => ClientChannel>((resolve) => x.client.once('tcp connection', (_info, accept) => resolve(accept)));
    await new Promise<void>((resolve, reject) => x.client.forwardIn('sink-l', 22, (err) => (err ? reject(err) : resolve())));
    const y = await t.member('user', { grant: { kind: 'open', exposure: 'sink-l' } });
    const first = refusal(openDirect(y.client, 'sink-l', 22));
    const accept = await asked;
    assert.match(await first, /did not accept the channel within/);
    const xch = accept().resume();
    await within(new Promise((resolve) => xch.once('close', resolve)), 10_000, "X's late channel closed");
    await roundTrip(x.client);

    x.client.on('tcp connection', (_info, acc) => acc().resume());
    assert.equal(await refusal(openDirect(y.client, 'sink-l', 22)), 'opened');
  });
});

describe("Y's CLOSE gives back its channel on Y's connection at once", { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--max-channels-per-connection', '2']);

  it('at the limit, an open in the same read as a CLOSE opens, and the limit still holds after it', async () => {
    // Two ports of one exposure, each bound by its own X: only Y's connection is at its limit.
    for (const port of [22, 23]) {
      const x = await t.member(`owner-${port}`, { grant: { kind: 'expose', exposure: 'slot', port } });
      x.client.on('tcp connection', (_info, accept) => accept().resume());
      await new Promise<void>((resolve, reject) => x.client.forwardIn('slot', port, (err) => (err ? reject(err) : resolve())));
    }
    const y = await t.member('user', { grant: { kind: 'open', exposure: 'slot' } });
    const ya = (await openDirect(y.client, 'slot', 22)).resume();
    (await openDirect(y.client, 'slot', 23)).resume();
    assert.match(await refusal(openDirect(y.client, 'slot', 23)), /too many open channels on this connection \(limit 2\)/);

    // Y's CLOSE and its next open reach the relay in one read: ssh2 handles both before its
    // 'close' of the first channel (which waits for the end of what Y sent) comes.
    const sock = socketOfClient(y.client);
    sock.cork();
    ya.close();
    const next = refusal(openDirect(y.client, 'slot', 23));
    sock.uncork();
    assert.equal(await next, 'opened');
    assert.match(await refusal(openDirect(y.client, 'slot', 23)), /too many open channels on this connection \(limit 2\)/);
  });
});
