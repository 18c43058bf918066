/**
 * A relay whose clock is off from the control plane's says so: the relay judges leases and
 * certificates by its own clock, offline, so an hour behind it accepts expired leases for an
 * hour more, and nobody was told. Each heartbeat answer's server_time gives the offset: one
 * warning per episode, /healthz's heartbeat.clock_offset_ms and clock_skewed, the
 * tunnel_node_clock_offset_seconds gauge, and an info line once the clock agrees again.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fetch } from 'undici';
import { startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { parsePrometheusText } from './prom-text.js';
import { within } from './ssh-tools.js';

const HOUR = 3_600_000;
const WARNED = /clock is off from the control plane/;
const AGREES = /clock agrees with the control plane/;

interface HeartbeatHealth {
  failing: boolean;
  clock_offset_ms: number | null;
  clock_skewed: boolean;
}

describe('relay clock offset from the heartbeat answers', () => {
  let fc: FakeControl;
  let relay: StartedRelay | undefined;

  before(async () => {
    fc = await startFakeControl();
  });

  after(async () => {
    await relay?.stop();
    await fc.stop();
  });

  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${relay!.metricsPort}/healthz`);
    return { status: res.status, body: (await res.json()) as { ok: boolean; heartbeat: HeartbeatHealth } };
  };
  const offsetSeconds = async () => {
    const text = await (await fetch(`http://127.0.0.1:${relay!.metricsPort}/metrics`)).text();
    return parsePrometheusText(text).samples.find((s) => s.name === 'tunnel_node_clock_offset_seconds')?.value;
  };
  /** Resolves once `n` more heartbeats have reached the control plane. */
  const heartbeats = async (n: number) => {
    const target = fc.heartbeats.length + n;
    while (fc.heartbeats.length < target) await within(once(fc.emitter, 'heartbeat'), 20_000, 'a heartbeat');
  };

  it('warns once while the relay is an hour behind, shows it on /healthz and /metrics, and says when it agrees again', async () => {
    const agree = fc.offsetServerTime(HOUR);
    relay = await startRelay(fc, { args: ['--heartbeat-interval', '200ms'] });
    const warning = await within(relay.logger.waitFor((l) => WARNED.test(l.msg), 20_000), 20_000, 'the clock warning');
    assert.equal(warning.level, 'warn');
    assert.equal(warning.fields.thisClock, 'behind');
    // Within the round trip of a local request: a minute is far more than enough.
    assert.ok(Math.abs((warning.fields.offsetMs as number) - HOUR) < 60_000, String(warning.fields.offsetMs));

    const skewed = await health();
    assert.equal(skewed.status, 200, 'a skewed clock is told, not a reason to take the relay out of service');
    assert.equal(skewed.body.ok, true);
    assert.equal(skewed.body.heartbeat.clock_skewed, true);
    assert.ok(Math.abs(skewed.body.heartbeat.clock_offset_ms! - HOUR) < 60_000, String(skewed.body.heartbeat.clock_offset_ms));
    const gauge = await offsetSeconds();
    assert.ok(gauge !== undefined && Math.abs(gauge - HOUR / 1000) < 60, String(gauge));

    await heartbeats(3);
    assert.equal(relay.logger.lines.filter((l) => WARNED.test(l.msg)).length, 1, 'one warning for the episode, not one per heartbeat');

    const since = relay.logger.lines.length;
    agree();
    const back = await within(relay.logger.waitFor((l) => AGREES.test(l.msg), 20_000, since), 20_000, 'the clock agreeing again');
    assert.equal(back.level, 'info');
    const fixed = await health();
    assert.equal(fixed.body.heartbeat.clock_skewed, false);
    assert.ok(Math.abs(fixed.body.heartbeat.clock_offset_ms!) < 60_000, String(fixed.body.heartbeat.clock_offset_ms));
    assert.ok(Math.abs((await offsetSeconds())!) < 60);
    assert.equal(relay.logger.lines.filter((l) => WARNED.test(l.msg)).length, 1);
  });
});
