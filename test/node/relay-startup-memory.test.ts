/**
 * What the real `tunnel-node` binary keeps from its start (issue 11, idle relay RSS;
 * node/startup-memory.ts): it runs one full collection once it has been ready a while, and it
 * never loads ssh2's entry point (its Client, agent, HTTP agents, key generator) nor
 * node:perf_hooks, which an idle relay never runs, nor Node's bundled undici (which an ES import
 * of node:http loads on Node 22 and later: shared/node-http.ts), nor zod (protocol/check.ts); and
 * V8 optimizes nothing until it is ready (node/startup-tiering.ts). A
 * probe preloaded with --import records what the process loaded: ES modules through module hooks,
 * the rest when it exits.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFakeControl, type FakeControl } from '../harness/relay.js';
import { startRelayProcess } from '../harness/relay-process.js';
import { repoRoot } from '../harness/net.js';

/** Module hooks (node:module register): appends every ES module URL the relay loads to $PROBE_ESM. */
const ESM_HOOKS = `data:text/javascript,${encodeURIComponent(`
import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.PROBE_ESM, url + '\\n');
  return next(url, context);
}
`)}`;

/**
 * Preloaded into the relay: registers ESM_HOOKS, and at exit writes the built-in and CommonJS
 * modules it loaded to $PROBE_OUT.
 */
const PROBE = `data:text/javascript,${encodeURIComponent(`
import { createRequire, register } from 'node:module';
import { writeFileSync } from 'node:fs';
register(${JSON.stringify(ESM_HOOKS)});
const require = createRequire('/'); // the CommonJS cache is one per process
process.on('exit', () => writeFileSync(process.env.PROBE_OUT, JSON.stringify({ builtins: process.moduleLoadList, commonjs: Object.keys(require.cache) })));
`)}`;

describe('tunnel-node start-up memory (real binary)', () => {
  let fc: FakeControl;
  const dir = mkdtempSync(join(tmpdir(), 'relay-startup-memory-'));

  before(async () => {
    fc = await startFakeControl();
  });
  after(async () => {
    await fc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("collects start-up garbage once after ready, and loads neither ssh2 lib/index.js, node:perf_hooks, Node's undici nor zod", async () => {
    const out = join(dir, 'loaded.json');
    const esm = join(dir, 'esm.txt');
    const relay = await startRelayProcess({ controlUrl: fc.url, enrollToken: fc.enrollToken, nodeArgs: ['--import', PROBE], env: { PROBE_OUT: out, PROBE_ESM: esm } });
    try {
      // The collection runs 10 s after ready (STARTUP_COLLECTION_DELAY_MS), and logs what it did.
      const log = await relay.waitForStderr(/"msg":"start-up garbage collected"[^\n]*\n/, 0, 60_000);
      const line = JSON.parse(/\{[^\n]*"msg":"start-up garbage collected"[^\n]*\}/.exec(log)![0]) as Record<string, unknown>;
      for (const k of ['heap_used_before_mb', 'heap_used_after_mb', 'ms']) assert.equal(typeof line[k], 'number', JSON.stringify(line));
      assert.equal(relay.stderr().split('start-up garbage collected').length - 1, 1, 'once');
      const end = await relay.stop();
      assert.equal(end.code, 0, 'a clean exit on SIGTERM after the collection');
    } finally {
      relay.child.kill('SIGKILL');
      relay.cleanup();
    }
    const loaded = JSON.parse(readFileSync(out, 'utf8')) as { builtins: string[]; commonjs: string[] };
    const ssh2 = (file: string) => loaded.commonjs.some((p) => p.endsWith(join('node_modules', 'ssh2', 'lib', file)));
    assert.ok(ssh2('server.js'), 'the probe sees ssh2 files (its Server is loaded)');
    for (const file of ['index.js', 'client.js', 'agent.js', 'http-agents.js', 'keygen.js']) assert.ok(!ssh2(file), `ssh2/lib/${file} was loaded`);
    assert.ok(loaded.builtins.includes('NativeModule net'), 'the probe sees built-in modules');
    assert.ok(!loaded.builtins.includes('NativeModule perf_hooks'), 'node:perf_hooks was loaded');
    assert.ok(!loaded.builtins.includes('NativeModule internal/deps/undici/undici'), "Node's bundled undici was loaded");
    // zod costs an idle relay about 5 MB: the relay reads through protocol/check.ts's plain checks.
    const modules = readFileSync(esm, 'utf8').split('\n').filter((u) => u !== '');
    assert.ok(modules.some((u) => u.endsWith('/dist/node/relay.js')), 'the probe sees the relay\'s ES modules');
    assert.ok(modules.some((u) => u.endsWith('/dist/protocol/check.js')), 'the probe sees protocol/check.js');
    const zod = modules.filter((u) => u.includes('/node_modules/zod/') || u.includes('/node_modules/@hono/zod'));
    assert.deepEqual(zod, [], 'zod was loaded');
  });

  it('V8 optimizes nothing while it starts, and optimizes again once it is ready (node/startup-tiering.ts)', async () => {
    // --trace-opt prints on stdout, as the ready line does; each compile V8 finishes is a "completed" line.
    const compiledIn = (text: string) =>
      text.split('\n').filter((l) => /^\[completed (compiling|optimizing)/.test(l)).map((l) => /<JSFunction (\S*)/.exec(l)?.[1] ?? l);
    // What Node compiles before the relay's first module can run: finding and loading an entry
    // file in that directory (on Node 24, Maglev compiles its isPosixPathSeparator there).
    const entryOnly = new Set(compiledIn(execFileSync(process.execPath, ['--trace-opt', join(repoRoot(), 'dist', 'node', 'startup-tiering.js')], { encoding: 'utf8' })));
    const relay = await startRelayProcess({ controlUrl: fc.url, enrollToken: fc.enrollToken, nodeArgs: ['--trace-opt'] });
    try {
      const out = relay.stdout();
      const beforeReady = compiledIn(out.slice(0, out.indexOf('"ready":true')));
      assert.deepEqual(beforeReady.filter((f) => !entryOnly.has(f)), [], 'V8 optimized functions before the relay was ready');
      // After ready it optimizes again: scrape /metrics until something it runs is hot enough.
      const afterReady = () => relay.stdout().slice(out.indexOf('"ready":true'));
      let scrapes = 0;
      while (!/^\[completed (compiling|optimizing)/m.test(afterReady()) && scrapes < 5000) {
        const r = await fetch(`http://127.0.0.1:${relay.metricsPort}/metrics`);
        await r.arrayBuffer();
        scrapes++;
      }
      assert.match(afterReady(), /^\[completed (compiling|optimizing)/m, `nothing optimized after ready (${scrapes} scrapes of /metrics)`);
    } finally {
      await relay.stop();
      relay.cleanup();
    }
  });
});
