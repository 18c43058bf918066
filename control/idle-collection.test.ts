import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createIdleCollection } from './idle-collection.js';

/** An idle collection on a fake clock, its check run by hand. */
function fake(o: { quietMs?: number; minIntervalMs?: number; collect?: () => void; grown?: () => boolean } = {}) {
  let t = 0;
  let tick: (() => void) | undefined;
  let period = 0;
  let stopped = false;
  let collected = 0;
  const idle = createIdleCollection({
    quietMs: o.quietMs ?? 2_000,
    minIntervalMs: o.minIntervalMs ?? 30_000,
    now: () => t,
    collect: o.collect ?? (() => void collected++),
    grown: o.grown ?? (() => true),
    every: (ms, f) => {
      period = ms;
      tick = f;
      return { stop: () => void (stopped = true) };
    },
    onError: () => {},
  });
  const advance = (ms: number) => {
    for (let left = ms; left > 0; left -= period) {
      t += Math.min(period, left);
      tick!();
    }
  };
  return { idle, advance, period: () => period, collected: () => collected, stopped: () => stopped };
}

describe('youngGenerationGrown', () => {
  it('reads V8\'s new space: a fresh small process is under the threshold, and has one', async () => {
    const { execFileSync } = await import('node:child_process');
    const here = new URL('./idle-collection.js', import.meta.url).href;
    const out = execFileSync(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', `const m = await import(${JSON.stringify(here)}); process.stdout.write(String(m.youngGenerationGrown()))`], { encoding: 'utf8' });
    assert.equal(out, 'false');
    const any = execFileSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(here)}); process.stdout.write(String(m.youngGenerationGrown(0)))`], { encoding: 'utf8' });
    assert.equal(any, 'true', 'a new space in memory at all');
  });
});

describe('one full collection once the control plane is quiet after requests (control/idle-collection.ts)', () => {
  it('collects once quietMs after the last request, and not again while nothing arrives', () => {
    const f = fake();
    assert.equal(f.period(), 1_000);
    f.advance(60_000);
    assert.equal(f.collected(), 0, 'no request yet: nothing to give back');
    f.idle.request();
    f.advance(1_000);
    f.idle.request();
    f.advance(1_000);
    assert.equal(f.collected(), 0, 'a request 1 s ago');
    f.advance(1_000);
    assert.equal(f.collected(), 1);
    f.advance(120_000);
    assert.equal(f.collected(), 1, 'once per quiet period');
    assert.equal(f.idle.collections, 1);
  });

  it('a busy control plane is left to V8: requests closer than quietMs never collect', () => {
    const f = fake();
    for (let i = 0; i < 100; i++) {
      f.idle.request();
      f.advance(1_000);
    }
    assert.equal(f.collected(), 0);
  });

  it('at most once per minIntervalMs, the later quiet period collected when it is due', () => {
    const f = fake();
    f.idle.request();
    f.advance(2_000);
    assert.equal(f.collected(), 1);
    f.idle.request();
    f.advance(10_000);
    assert.equal(f.collected(), 1, 'quiet again, but 12 s after the last collection');
    f.advance(20_000);
    assert.equal(f.collected(), 2);
  });

  it('collects only while the young generation has grown (a quiet spell after each heartbeat is not enough)', () => {
    let grown = false;
    const f = fake({ minIntervalMs: 0, grown: () => grown });
    for (let i = 0; i < 10; i++) {
      f.idle.request();
      f.advance(5_000);
    }
    assert.equal(f.collected(), 0);
    grown = true;
    f.idle.request();
    f.advance(5_000);
    assert.equal(f.collected(), 1);
  });

  it('a collection that throws is reported and the next quiet period still collects', () => {
    let calls = 0;
    const f = fake({
      minIntervalMs: 0,
      collect: () => {
        calls++;
        throw new Error('boom');
      },
    });
    f.idle.request();
    f.advance(2_000);
    f.idle.request();
    f.advance(2_000);
    assert.equal(calls, 2);
    f.idle.stop();
    assert.ok(f.stopped());
  });

  it('the real collector runs a full collection (V8 then shrinks its young generation)', async () => {
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    const kinds: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind);
    });
    obs.observe({ entryTypes: ['gc'] });
    let t = 0;
    let tick: () => void = () => {};
    const idle = createIdleCollection({ now: () => t, grown: () => true, every: (_ms, f) => ((tick = f), { stop() {} }) });
    idle.request();
    t += 5_000;
    tick();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    obs.disconnect();
    assert.equal(idle.collections, 1);
    assert.ok(kinds.includes(constants.NODE_PERFORMANCE_GC_MAJOR), `kinds ${JSON.stringify(kinds)}`);
  });
});
