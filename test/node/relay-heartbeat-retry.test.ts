/**
 * A heartbeat the control plane could not take (503 while its database restarts) is sent again as
 * soon as it answers, not at the next --heartbeat-interval: the control plane counts a relay
 * online for twice the default interval after its last heartbeat, so one heartbeat lost this way
 * left the next to land at the edge of that window, and for a moment the relay and every
 * exposure on it read offline (the lab's "Postgres restarted under load" case: Y's opens refused
 * 409 EXPOSURE_OFFLINE just after the database came back). The interval here is an hour: a
 * heartbeat after the refused one can only be the retry.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { within } from './ssh-tools.js';

describe('heartbeat retried after the control plane could not take it', () => {
  let fc: FakeControl;
  let relay: StartedRelay | undefined;

  before(async () => {
    fc = await startFakeControl();
  });

  after(async () => {
    await relay?.stop();
    await fc.stop();
  });

  it('a refused heartbeat is retried while the refusals last, and once answered the relay reports again', async () => {
    const answer = fc.refuseHeartbeats();
    relay = await startRelay(fc, { args: ['--heartbeat-interval', '1h'] });
    await relay.logger.waitFor((l) => l.msg === 'heartbeat failed', 20_000);
    // Still refused: the retries keep coming (backing off), an hour's interval notwithstanding.
    const refused = fc.heartbeats.length;
    while (fc.heartbeats.length < refused + 2) await within(once(fc.emitter, 'heartbeat'), 20_000, 'a retry of the refused heartbeat');
    answer();
    const since = relay.logger.lines.length;
    const sent = fc.heartbeats.length;
    await within(relay.logger.waitFor((l) => l.msg === 'heartbeat recovered', 30_000, since), 30_000, 'a heartbeat answered after the refusals ended');
    assert.ok(fc.heartbeats.length > sent);
    // Said once when the heartbeats began failing, once when they recovered.
    assert.equal(relay.logger.lines.filter((l) => l.msg === 'heartbeat failed').length, 1);
    assert.equal(relay.logger.lines.filter((l) => l.msg === 'heartbeat recovered').length, 1);
  });
});
