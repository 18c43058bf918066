import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeartbeatLoop } from './heartbeat-loop.js';
import type { NodeHeartbeatResponse } from './control-client.js';
import { ManualClock, type Clock } from '../shared/clock.js';
import { createMemoryLogger, type Logger } from '../shared/logger.js';

const T0 = Date.parse('2026-12-06T09:00:00.000Z');
const HOUR = 3_600_000;

/**
 * A loop whose control plane takes `rttMs` of `clock` to answer, its own clock `offsetMs` ahead
 * of it at the moment it reads it (halfway), with `answer` in place of its answer when given.
 */
function loopWith(o: { clock?: Clock; offsetMs?: number; rttMs?: number; answer?: () => unknown; logger?: Logger }) {
  const manual = new ManualClock(T0);
  const clock = o.clock ?? manual;
  const logger = createMemoryLogger();
  const loop = new HeartbeatLoop({
    control: {
      heartbeat: async () => {
        manual.advance((o.rttMs ?? 0) / 2);
        const serverTime = new Date(manual.now().getTime() + (o.offsetMs ?? 0)).toISOString();
        manual.advance((o.rttMs ?? 0) / 2);
        return (o.answer ? o.answer() : { server_time: serverTime }) as NodeHeartbeatResponse;
      },
    },
    reporter: { exclusive: (send) => send() },
    logger: o.logger ?? logger,
    clock,
    intervalMs: HOUR,
    startedAt: new Date(T0).toISOString(),
    report: () => ({ version: 'test', native_crypto: true, egress_driver: 'off', connections: 0, exposures: [] }),
    stopping: () => false,
  });
  return { loop, logger, manual };
}

describe('HeartbeatLoop: the clock offset from each answer', () => {
  it('holds the answer\'s server_time against the midpoint of the exchange by the injected clock', async () => {
    const { loop, logger } = loopWith({ offsetMs: HOUR, rttMs: 300 });
    await loop.beat();
    assert.deepEqual(loop.status(), { failing: false, last_error: null, clock_offset_ms: HOUR, clock_skewed: true });
    assert.equal(loop.clockOffsetMs, HOUR);
    const warned = logger.lines.filter((l) => l.level === 'warn');
    assert.equal(warned.length, 1);
    assert.deepEqual(warned[0]!.fields, { offsetMs: HOUR, uncertaintyMs: 150, boundMs: 30_000, thisClock: 'behind' });
    await loop.beat();
    assert.equal(logger.lines.filter((l) => l.level === 'warn').length, 1, 'one warning for the episode');
  });

  it('an answer without a readable server_time, a clock or logger that throws: the heartbeat still counts as answered', async () => {
    const throwingClock: Clock = {
      now: () => {
        throw new Error('injected: a clock that throws');
      },
    };
    const throwingLogger: Logger = {
      info: () => {},
      warn: () => {
        throw new Error('injected: a logger that throws');
      },
      error: () => {},
      child: () => throwingLogger,
    };
    const cases = [
      loopWith({ answer: () => ({ server_time: 'not a time' }) }),
      loopWith({ answer: () => ({ server_time: '+275760-09-13T00:00:00.001Z' }) }),
      loopWith({ answer: () => undefined }),
      loopWith({ answer: () => 'text' }),
      loopWith({
        answer: () => ({
          get server_time(): string {
            throw new Error('injected: an answer that throws');
          },
        }),
      }),
      loopWith({ clock: throwingClock, offsetMs: HOUR }),
      loopWith({ logger: throwingLogger, offsetMs: HOUR }),
    ];
    for (const [i, { loop }] of cases.entries()) {
      await loop.beat();
      assert.deepEqual({ failing: loop.status().failing, last_error: loop.status().last_error }, { failing: false, last_error: null }, `case ${i}`);
      loop.stop();
    }
    assert.equal(cases[6]!.loop.status().clock_skewed, true, 'the estimate kept, its warning lost');
  });
});
