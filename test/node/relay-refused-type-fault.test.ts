/**
 * The observer of the channel opens ssh2 refuses on its own (session, x11, ...; node/refused-
 * channel-types.ts) runs under the connection's fault guard, as every other ssh2 callback does:
 * a throw in it is a fault of that connection (logged with its session id, counted under
 * where="channel-open", the connection closed as internal_error). Only its counting part was
 * guarded; a throw in the rest reached ssh2's parser, which only ended the socket, uncounted. The
 * fault is injected with --test-fault channel-open on the connections of user
 * `fault-channel-open` (node/fault-guard.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

describe('a throw while a refused channel type is counted is a fault of its connection', { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--test-fault', 'channel-open']);

  it('a session open: counted under where="channel-open", the connection closed', async () => {
    const y = await t.member('fault-channel-open');
    const from = t.relay.logger.lines.length;
    y.client.exec('true', () => {});
    const fault = await t.relay.logger.waitFor((l) => l.msg === 'connection handler failed; closing the connection', 10_000, from);
    assert.equal(fault.fields.where, 'channel-open');
    await within(y.closed, 10_000, 'the faulty connection closed');
    const faults = parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_handler_faults_total', { where: 'channel-open' });
    assert.equal(faults, 1);
  });
});
