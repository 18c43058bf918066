/**
 * A throw while a closed bridge is released (its member's channel, its byte counts) is a fault of
 * its connection, and the connection's conn_close still goes out. The bridge left the
 * connection's set of open bridges only after those steps, so a throw kept it there, and the
 * connection's close, which waits for its last bridge (to count what bridges left at its close
 * carried), never reported it. Injected with --test-fault bridge-close on the connections of user
 * `fault-bridge-close` (node/fault-guard.ts); in-process relay, fake control plane, ssh2 peers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openDirect } from './hostile-clients.js';
import { connCloseOf, relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

describe('a fault while a bridge closes', { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--test-fault', 'bridge-close', '--max-channels-per-member', '1']);

  it('is counted and closes the connection, whose conn_close is still reported', async () => {
    const x = await t.member('x-bridge-close', { grant: { kind: 'expose', exposure: 'bc', port: 22 } });
    x.client.on('tcp connection', (_info, accept) => accept().on('error', () => {}).resume());
    await new Promise<void>((resolve, reject) => x.client.forwardIn('bc', 22, (err) => (err ? reject(err) : resolve())));
    const y = await t.member('fault-bridge-close', { grant: { kind: 'open', exposure: 'bc' } });
    const from = t.relay.logger.lines.length;
    const ch = await openDirect(y.client, 'bc', 22);
    ch.on('error', () => {}).resume();
    ch.close();
    const fault = await t.relay.logger.waitFor((l) => l.msg === 'connection handler failed; closing the connection', 10_000, from);
    assert.equal(fault.fields.where, 'bridge-close');
    await within(y.closed, 10_000, 'the faulty connection closed');
    const closed = await within(connCloseOf(t.fc, y.leaseId), 10_000, "Y's conn_close reported");
    assert.equal(closed.type, 'conn_close');
  });

  it("gives the member's channel back all the same (its next open is not refused)", async () => {
    // The first case's bridge faulted at its close: with one channel per member, a channel kept
    // by that close refuses every later open of the member.
    const y = await t.member('fault-bridge-close', { grant: { kind: 'open', exposure: 'bc' } });
    const ch = await openDirect(y.client, 'bc', 22);
    ch.on('error', () => {}).resume();
    ch.close();
  });
});
