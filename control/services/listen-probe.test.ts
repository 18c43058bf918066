import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { describe, it } from 'node:test';
import { noopLogger, type Logger } from '../../shared/logger.js';
import { ListenProbe, PROBE_PREFIX } from './listen-probe.js';

/** A probe whose NOTIFYs come back (`echo`) or not, with its changes as events. */
function probeWith(o: { echo: boolean; logger?: Logger; onChange?: (hearing: boolean) => void }) {
  const changes = new EventEmitter();
  const sent: string[] = [];
  let echo = o.echo;
  // The probe's timers are unref'd (they must not hold a control plane open); this keeps the test's loop alive.
  const keepAlive = setInterval(() => {}, 1000);
  const probe: ListenProbe = new ListenProbe({
    everyMs: 20,
    deafAfterMs: 100,
    logger: o.logger ?? noopLogger,
    notify: async (payload) => {
      sent.push(payload);
      if (echo) setImmediate(() => probe.heard(payload));
    },
    onChange: (hearing) => {
      changes.emit('change', hearing);
      o.onChange?.(hearing);
    },
  });
  return {
    probe,
    sent,
    changes,
    setEcho: (on: boolean) => (echo = on),
    stop: () => {
      probe.stop();
      clearInterval(keepAlive);
    },
  };
}

describe('ListenProbe', () => {
  it('a LISTEN that hears its probes stays hearing: no change after many more probes than the deaf time', async () => {
    const p = probeWith({ echo: true });
    const changes: boolean[] = [];
    p.changes.on('change', (h: boolean) => changes.push(h));
    try {
      p.probe.start();
      // 20 probes at 20 ms: 400 ms, four times the deaf time.
      while (p.probe.heardCount < 20) await new Promise((r) => setImmediate(r));
      assert.deepEqual(changes, []);
      assert.equal(p.probe.hearing, true);
    } finally {
      p.stop();
    }
  });

  it('turns deaf when its probes stop coming back, once, and hearing again at the first one that does', async () => {
    const warned: string[] = [];
    const logger: Logger = { ...noopLogger, warn: (msg: string) => void warned.push(msg), child: () => logger };
    const p = probeWith({ echo: false, logger });
    const deadline = AbortSignal.timeout(10_000);
    try {
      p.probe.start();
      const [deaf] = (await once(p.changes, 'change', { signal: deadline })) as [boolean];
      assert.equal(deaf, false);
      assert.equal(p.probe.hearing, false);
      const sentWhenDeaf = p.sent.length;
      while (p.sent.length < sentWhenDeaf + 5) await new Promise((r) => setImmediate(r));
      assert.equal(warned.length, 1, 'one warning for the episode');
      assert.match(warned[0]!, /LISTEN hears nothing on the revocations channel/);
      p.setEcho(true);
      const [back] = (await once(p.changes, 'change', { signal: deadline })) as [boolean];
      assert.equal(back, true);
    } finally {
      p.stop();
    }
  });

  it("another replica's probe is a probe (the caller ignores it) but says nothing of this LISTEN; other payloads are not probes", () => {
    const p = probeWith({ echo: false });
    try {
      assert.equal(p.probe.heard(`${PROBE_PREFIX}someone-else:1`), true);
      assert.equal(p.probe.heardCount, 0);
      for (const payload of ['node_a,node_b', '*', '!nod_x:abc', '']) assert.equal(p.probe.heard(payload), false, payload);
    } finally {
      p.stop();
    }
  });

  it('a change callback that throws is logged, and the probe goes on', async () => {
    const errors: string[] = [];
    const logger: Logger = { ...noopLogger, error: (msg: string) => void errors.push(msg), child: () => logger };
    const p = probeWith({
      echo: false,
      logger,
      onChange: () => {
        throw new Error('injected');
      },
    });
    const deadline = AbortSignal.timeout(10_000);
    try {
      p.probe.start();
      await once(p.changes, 'change', { signal: deadline });
      p.setEcho(true);
      await once(p.changes, 'change', { signal: deadline });
      assert.equal(p.probe.hearing, true);
      assert.deepEqual(errors, ['listen probe: the change callback failed', 'listen probe: the change callback failed']);
    } finally {
      p.stop();
    }
  });
});
