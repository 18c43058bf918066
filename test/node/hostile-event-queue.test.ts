/**
 * Hostile members: the relay's event queue. It holds --events-queue-max events while the control
 * plane is down and used to drop the oldest whatever its member: a member reconnecting in a loop
 * (two events a connection, four with an exposure) pushed every other member's events out before
 * they were sent. Now the queue, when full, drops the oldest event of the member holding the
 * most, so the flood costs only the flooder's own events.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionEvent } from '../../protocol/api-types.js';
import { relayUnderTest } from './relay-under-test.js';

describe('hostile: a member reconnecting in a loop does not push other members\' events out of the relay\'s queue', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--events-queue-max', '20', '--events-flush-interval', '100ms']);

  it("while control is down, 30 connections of one member overflow the queue; the other member's events all reach control once it is back", async () => {
    const up = t.fc.refuseEvents();
    const y = await t.member('quiet', { grant: { kind: 'expose', exposure: 'quiet-svc', port: 22 } });
    await new Promise<void>((resolve, reject) => y.client.forwardIn('quiet-svc', 22, (err) => (err ? reject(err) : resolve())));

    for (let i = 0; i < 30; i++) {
      const x = await t.member('loud');
      x.client.end();
      await x.closed;
    }
    const dropped = await t.relay.logger.waitFor((l) => l.msg === 'connection events dropped' && l.fields.reason === 'queue_full');

    y.client.end();
    await y.closed;
    const ys = (events: ConnectionEvent[]) =>
      events.filter((e) => e.lease_id === y.leaseId || e.exposure === 'quiet-svc').map((e) => e.type);
    const all: ConnectionEvent['type'][] = ['conn_open', 'exposure_online', 'exposure_offline', 'conn_close'];
    // Its last event: the relay sends its queue in order, so what is left of everything before it came first.
    const arrived = new Promise<void>((resolve) => {
      const check = () => {
        if (ys(t.fc.events).includes('conn_close')) {
          t.fc.emitter.off('events', check);
          resolve();
        }
      };
      t.fc.emitter.on('events', check);
      check();
    });
    up();
    await arrived;
    assert.deepEqual(ys(t.fc.events), all, "every one of quiet's events, once, in order");
    assert.equal(dropped.fields.member, 'usr_loud', 'dropped from the member holding the most');
  });
});
