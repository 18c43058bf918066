import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { createGcPacer, minorCollector, v8FullPacing, type FullPacing } from './gc-pacer.js';
import { parseConfig } from './config.js';

describe('gc pacer', () => {
  it('collects once per bytesPerCollection read, and counts', () => {
    let calls = 0;
    const pacer = createGcPacer(1000, () => calls++);
    pacer.read(400);
    pacer.read(400);
    assert.equal(calls, 0);
    pacer.read(300);
    assert.equal(calls, 1);
    pacer.read(999);
    assert.equal(calls, 1, 'the count starts again after a collection');
    pacer.read(1);
    assert.equal(calls, 2);
    assert.equal(pacer.collections, 2);
  });

  it('0 never collects', () => {
    let calls = 0;
    const pacer = createGcPacer(0, () => calls++);
    for (let i = 0; i < 100; i++) pacer.read(1 << 20);
    assert.equal(calls, 0);
    assert.equal(pacer.collections, 0);
  });

  it('the collector frees unreachable packet-sized Buffers, without --expose-gc, and does not leave gc exposed', async () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'run without --expose-gc');
    const collect = minorCollector();
    collect();
    const held = () => process.memoryUsage().arrayBuffers;
    const before = held();
    // 16 MiB of 32 KiB Buffers, each with its own backing store as ssh2's packets, dropped at once.
    (() => {
      for (let i = 0; i < 512; i++) Buffer.allocUnsafeSlow(32 * 1024).fill(1);
    })();
    assert.ok(held() - before >= 15 * 1024 * 1024, `${held() - before} bytes held`);
    collect();
    // Backing stores are freed by a sweeper task after the collection: give it a moment.
    for (let i = 0; i < 100 && held() - before > 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(held() - before <= 1024 * 1024, `${held() - before} bytes still held after the collection`);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  });

  it('paced young collections run on the main thread alone: no parallel scavenge tasks, backing stores freed within the collection', () => {
    // A fresh process (V8's flags are per process), with V8's per-collection trace (one line per
    // collection: its kind, gc=s for a scavenge, and the time worker threads spent in it,
    // background.scavenge.parallel). Each round marks the paced collection's start and end, with
    // the memory its dead Buffers still hold when it returns.
    const script = `
      const { minorCollector } = await import(${JSON.stringify(new URL('./gc-pacer.js', import.meta.url).href)});
      const collect = minorCollector();
      process.stdout.write('PACED\\n');
      let live = [];
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 20000; i++) live.push({ i, s: 'x' + i }); // young objects the collection copies
        const before = process.memoryUsage().arrayBuffers;
        for (let i = 0; i < 64; i++) Buffer.allocUnsafeSlow(32 * 1024).fill(1); // dead packet-sized Buffers
        process.stdout.write('ROUND\\n');
        collect();
        process.stdout.write('HELD ' + (process.memoryUsage().arrayBuffers - before) + '\\n');
        if (live.length > 60000) live = [];
      }
    `;
    const out = execFileSync(process.execPath, ['--trace-gc-nvp', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const paced = out.slice(out.indexOf('PACED'));
    const background = [...paced.matchAll(/background\.scavenge\.parallel=([\d.]+)/g)].map((m) => Number(m[1]));
    // With V8's defaults, worker threads took part in these 20 collections for 100-230 ms in all (this machine).
    assert.equal(background.reduce((a, b) => a + b, 0), 0, `worker threads' time in the scavenges: ${background.join(', ')} ms`);
    const rounds = [...paced.matchAll(/ROUND\n([^]*?)HELD (-?\d+)\n/g)].map((m) => ({ kinds: [...m[1]!.matchAll(/ gc=(\w+)/g)].map((k) => k[1]), held: Number(m[2]) }));
    assert.equal(rounds.length, 20, out.slice(-2000));
    // Node 24's V8 (13) turns a young collection asked for while its incremental marking is ready
    // to finish into that mark-compact (gc=mc, once in about 20 rounds here; never on Node 20 and
    // 22). Buffers allocated while it was marking count as live in it (V8 marks new backing stores
    // during marking), so they stay until the next full collection: not what this test is about.
    const young = rounds.filter((r) => r.kinds.length === 1 && r.kinds[0] === 's');
    assert.ok(young.length >= 15, `${young.length} of 20 paced collections were scavenges alone: ${JSON.stringify(rounds)}`);
    const held = young.filter((r) => r.held > 1024 * 1024);
    assert.deepEqual(held, [], "the dead Buffers' memory is freed by the time the scavenge returns (V8's default frees it in a job on a worker thread, often later)");
  });

  it('with full pacing, a paced collection is a full one once the memory held in Buffers grew past its lowest level since the last full one', () => {
    const MiB = 1024 * 1024;
    const calls: string[] = [];
    let held = 10 * MiB;
    const full: FullPacing = { afterBytes: 2 * MiB, burstBytes: 0, live: () => 0, minIntervalMs: 0, now: () => 0, external: () => held, collect: () => calls.push('full') };
    const pacer = createGcPacer(1000, () => calls.push('minor'), full);
    pacer.read(1000); // lowest so far: 10 MiB; full past 10 + 2 + 5 = 17 MiB
    held = 8 * MiB; // lower: 8 + 2 + 4 = 14 MiB
    pacer.read(1000);
    held = 14 * MiB;
    pacer.read(1000);
    assert.deepEqual(calls, ['minor', 'minor', 'minor'], 'at 14 MiB: not past 14');
    held = 14 * MiB + 1;
    pacer.read(1000);
    assert.deepEqual(calls.slice(3), ['full']);
    // After a full collection the lowest level starts again from the next reading.
    held = 30 * MiB;
    pacer.read(1000);
    held = 45 * MiB;
    pacer.read(1000);
    assert.deepEqual(calls.slice(4), ['minor', 'minor'], 'at 45 MiB: not past 30 + 2 + 15');
    pacer.read(999);
    assert.equal(calls.length, 6, 'reads between collections do not read the memory or collect');
    held = 48 * MiB;
    pacer.read(1);
    assert.deepEqual(calls.slice(6), ['full']);
    assert.equal(pacer.collections, 7);
    assert.equal(pacer.fullCollections, 2);
  });

  it('full collections are at least minIntervalMs apart, however fast the memory grows', () => {
    const MiB = 1024 * 1024;
    const calls: string[] = [];
    let held = 0;
    let t = 5000;
    const full: FullPacing = { afterBytes: 2 * MiB, burstBytes: 0, live: () => 0, minIntervalMs: 1000, now: () => t, external: () => held, collect: () => calls.push('full') };
    const pacer = createGcPacer(1000, () => calls.push('minor'), full);
    pacer.read(1000); // lowest: 0
    held = 3 * MiB;
    pacer.read(1000);
    assert.deepEqual(calls, ['minor', 'full']);
    held = 0;
    pacer.read(1000); // lowest again: 0
    held = 3 * MiB;
    t += 999;
    pacer.read(1000);
    pacer.read(1000);
    assert.deepEqual(calls.slice(2), ['minor', 'minor', 'minor'], 'past the level, within the floor: young ones');
    t += 1;
    pacer.read(1000);
    assert.deepEqual(calls.slice(5), ['full'], 'the floor passed');
    assert.equal(pacer.fullCollections, 2);
  });

  it('with the burst rule, the paced collection after a burst has drained is a full one, at most one per minIntervalMs', () => {
    const MiB = 1024 * 1024;
    const calls: string[] = [];
    let live = 0;
    let t = 0;
    // The growth rule off (afterBytes 0): only the burst rule decides.
    const full: FullPacing = { afterBytes: 0, burstBytes: 2 * MiB, live: () => live, minIntervalMs: 1000, now: () => t, external: () => 100 * MiB, collect: () => calls.push('full') };
    const pacer = createGcPacer(1000, () => calls.push('minor'), full);
    live = 2 * MiB - 1; // held, but not a burst
    pacer.read(1000);
    live = 0;
    pacer.read(1000);
    assert.deepEqual(calls, ['minor', 'minor'], 'below burstBytes: no burst, nothing to collect after it');
    live = 2 * MiB;
    pacer.read(1000);
    live = MiB; // draining, not drained (above a quarter)
    pacer.read(1000);
    assert.deepEqual(calls.slice(2), ['minor', 'minor'], 'a burst still held: young collections');
    live = MiB / 2; // a quarter: drained
    pacer.read(1000);
    assert.deepEqual(calls.slice(4), ['full']);
    pacer.read(1000);
    assert.deepEqual(calls.slice(5), ['minor']);
    // A second burst within the floor waits for it, then collects once.
    live = 8 * MiB;
    pacer.read(1000);
    live = 0;
    t += 999;
    pacer.read(1000);
    assert.deepEqual(calls.slice(6), ['minor', 'minor'], 'drained within the floor: young');
    t += 1;
    pacer.read(1000);
    pacer.read(1000);
    assert.deepEqual(calls.slice(8), ['full', 'minor'], 'the floor passed: the drained burst is collected');
    t += 2000;
    pacer.read(1000);
    assert.deepEqual(calls.slice(10), ['minor'], 'once per burst, floor or not');
    assert.equal(pacer.fullCollections, 2);
    assert.equal(pacer.collections, 11);
  });

  it('full collections are at least minReadBytes read apart, whatever the clock says', () => {
    const MiB = 1024 * 1024;
    const calls: string[] = [];
    let live = 0;
    const full: FullPacing = { afterBytes: 0, burstBytes: 2 * MiB, minReadBytes: 5000, live: () => live, minIntervalMs: 0, now: () => 0, external: () => 0, collect: () => calls.push('full') };
    const pacer = createGcPacer(1000, () => calls.push('minor'), full);
    const burst = () => {
      live = 2 * MiB;
      pacer.read(1000);
      live = 0;
      pacer.read(1000);
    };
    burst();
    assert.deepEqual(calls, ['minor', 'full'], 'the first full collection needs no bytes before it');
    burst(); // 2000 bytes read since
    pacer.read(1000);
    pacer.read(1000);
    assert.deepEqual(calls.slice(2), ['minor', 'minor', 'minor', 'minor'], 'drained, but 4000 bytes read since the last full one');
    pacer.read(1000);
    assert.deepEqual(calls.slice(6), ['full'], '5000 bytes read: the drained burst is collected');
  });

  it('without full pacing, or with --gc-full-after 0, every paced collection is a young one', () => {
    let minors = 0;
    const pacer = createGcPacer(1000, () => minors++, v8FullPacing(0));
    for (let i = 0; i < 50; i++) pacer.read(1000);
    assert.equal(minors, 50);
    assert.equal(pacer.fullCollections, 0);
  });

  it("the full collector frees promoted packet-sized Buffers, which young collections leave allocated", async () => {
    const full = v8FullPacing(1);
    assert.ok(full);
    const minor = minorCollector();
    const held = () => process.memoryUsage().arrayBuffers;
    full.collect();
    const before = held();
    let kept: Buffer[] | null = Array.from({ length: 512 }, () => Buffer.allocUnsafeSlow(32 * 1024).fill(1));
    // Alive through a full collection, which moves the young generation's survivors to the old
    // one. Two young collections did not always promote them: run alone (a fresh heap) they stayed
    // young 3 times in 3 and the next young collection freed them, and CI once failed so.
    full.collect();
    assert.equal(kept.length, 512);
    kept = null;
    minor();
    minor();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(held() - before >= 15 * 1024 * 1024, `young collections freed promoted Buffers (${held() - before} bytes left): nothing to show`);
    assert.ok(full.external() - before >= 15 * 1024 * 1024, `external memory ${full.external()} does not count the Buffers`);
    full.collect();
    for (let i = 0; i < 100 && held() - before > 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(held() - before <= 1024 * 1024, `${held() - before} bytes still held after the full collection`);
  });

  it('--gc-every: 1 MiB by default, 0 turns it off, sizes like the other bounds', () => {
    const run = (args: string[]) => {
      const r = parseConfig(['--control-url', 'https://c:8443', '--listen', '127.0.0.1:2222', ...args], {});
      assert.equal(r.kind, 'run');
      return r.kind === 'run' ? r.config.gcEveryBytes : NaN;
    };
    assert.equal(run([]), 1024 * 1024);
    assert.equal(run(['--gc-every', '0']), 0);
    assert.equal(run(['--gc-every', '4MiB']), 4 * 1024 * 1024);
    assert.throws(() => run(['--gc-every', 'lots']));
  });

  it('--gc-full-after: off by default, sizes like the other bounds', () => {
    const run = (args: string[]) => {
      const r = parseConfig(['--control-url', 'https://c:8443', '--listen', '127.0.0.1:2222', ...args], {});
      assert.equal(r.kind, 'run');
      return r.kind === 'run' ? r.config.gcFullAfterBytes : NaN;
    };
    assert.equal(run([]), 0);
    assert.equal(run(['--gc-full-after', '2MiB']), 2 * 1024 * 1024);
    assert.equal(run(['--gc-full-after', '8MiB']), 8 * 1024 * 1024);
    assert.throws(() => run(['--gc-full-after', 'lots']));
  });
});
