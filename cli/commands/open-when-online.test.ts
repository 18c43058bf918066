import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError, EXIT } from '../errors.js';
import { CONNECTION_CLOSED, openWhenOnline, RELAY_BUSY, retryPlan, type RetryPlan } from './open-when-online.js';

/** A plan on a fake clock: wait() moves it on and records the pauses. */
function fakePlan(deadlineMs: number): RetryPlan & { pauses: number[] } {
  let t = 0;
  const pauses: number[] = [];
  return {
    deadline: deadlineMs,
    firstPauseMs: 250,
    maxPauseMs: 2_000,
    now: () => t,
    wait: async (ms) => {
      pauses.push(ms);
      t += ms;
    },
    pauses,
  };
}

const offline = () => new CliError(EXIT.EXPOSURE_OFFLINE, 'x:22 is offline');
const closed = () => new CliError(EXIT.UNREACHABLE, 'closed before', { code: CONNECTION_CLOSED });

/** openWhenOnline on one connection whose opens throw `refusals` one by one, then give a channel. */
async function opensAfter(refusals: Error[], plan: RetryPlan): Promise<{ ch: string; opens: number }> {
  let opens = 0;
  const ch = await openWhenOnline(
    async () => 'conn',
    async () => {
      opens++;
      const e = refusals.shift();
      if (e) throw e;
      return 'channel';
    },
    plan,
  );
  return { ch, opens };
}

describe('openWhenOnline (tunnel open --listen, one local connection)', () => {
  it('tries an offline exposure again with growing pauses until it opens', async () => {
    const plan = fakePlan(15_000);
    const { ch, opens } = await opensAfter([offline(), offline(), closed(), offline(), offline(), offline()], plan);
    assert.equal(ch, 'channel');
    assert.equal(opens, 7);
    assert.deepEqual(plan.pauses, [250, 500, 1000, 2000, 2000, 2000]);
  });

  it('gives up with the last refusal at the deadline, and asks next() only for the time left', async () => {
    const plan = fakePlan(3_000);
    const asked: number[] = [];
    await assert.rejects(
      openWhenOnline(
        async (ms) => {
          asked.push(ms);
          return 'conn';
        },
        async () => {
          throw offline();
        },
        plan,
      ),
      (err: unknown) => err instanceof CliError && err.exitCode === EXIT.EXPOSURE_OFFLINE,
    );
    assert.deepEqual(plan.pauses, [250, 500, 1000]);
    assert.deepEqual(asked, [3000, 2750, 2250, 1250]);
  });

  it('tries a busy relay again (its pending-open limit, 32, while every waiting connection opens at once)', async () => {
    const plan = fakePlan(15_000);
    const { ch, opens } = await opensAfter([new CliError(EXIT.UNREACHABLE, 'the relay is busy: too many pending opens; try again', { code: RELAY_BUSY })], plan);
    assert.equal(ch, 'channel');
    assert.equal(opens, 2);
    assert.deepEqual(plan.pauses, [250]);
  });

  it('does not try other refusals again', async () => {
    for (const err of [new CliError(EXIT.NOT_PERMITTED, 'not in lease'), new CliError(EXIT.UNREACHABLE, 'relay did not answer'), new Error('boom')]) {
      const plan = fakePlan(15_000);
      let opens = 0;
      await assert.rejects(
        openWhenOnline(
          async () => 'conn',
          async () => {
            opens++;
            throw err;
          },
          plan,
        ),
        (e: unknown) => e === err,
      );
      assert.equal(opens, 1);
      assert.deepEqual(plan.pauses, []);
    }
  });

  it('ends when next() refuses (no connection in time, or tunnel open stopping)', async () => {
    const plan = fakePlan(15_000);
    let calls = 0;
    await assert.rejects(
      openWhenOnline(
        async () => {
          if (++calls > 1) throw new CliError(EXIT.UNREACHABLE, 'no connection to the relay');
          return 'conn';
        },
        async () => {
          throw closed();
        },
        plan,
      ),
      /no connection to the relay/,
    );
    assert.equal(calls, 2);
  });

  it('retryPlan: the wall clock set back an hour does not stretch the 15 s', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_800_000_000_000 });
    const plan = retryPlan(15_000);
    t.mock.timers.setTime(1_800_000_000_000 - 3_600_000);
    const left = plan.deadline - plan.now();
    assert.ok(left <= 15_000 && left > 0, `${left} ms left`);
  });
});
