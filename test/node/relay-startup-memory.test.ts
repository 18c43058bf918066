/**
 * What the real `tunnel-node` binary keeps from its start (issue 11, idle relay RSS;
 * node/startup-memory.ts): it runs one full collection once it has been ready a while, and it
 * never loads ssh2's entry point (its Client, agent, HTTP agents, key generator) nor
 * node:perf_hooks, which an idle relay never runs, nor Node's bundled undici (which an ES import
 * of node:http loads on Node 22 and later: shared/node-http.ts), nor zod (protocol/check.ts). A
 * probe preloaded with --import records what the process loaded: ES modules through module hooks,
 * the rest when it exits.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RELAY_NODE_FLAGS } from '../../node/node-flags.js';
import { startFakeControl, type FakeControl } from '../harness/relay.js';
import { startRelayProcess } from '../harness/relay-process.js';

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
 * modules it loaded and its node flags to $PROBE_OUT.
 */
const PROBE = `data:text/javascript,${encodeURIComponent(`
import { createRequire, register } from 'node:module';
import { writeFileSync } from 'node:fs';
register(${JSON.stringify(ESM_HOOKS)});
const require = createRequire('/'); // the CommonJS cache is one per process
process.on('exit', () => writeFileSync(process.env.PROBE_OUT, JSON.stringify({ builtins: process.moduleLoadList, commonjs: Object.keys(require.cache), execArgv: process.execArgv })));
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
    const loaded = JSON.parse(readFileSync(out, 'utf8')) as { builtins: string[]; commonjs: string[]; execArgv: string[] };
    assert.deepEqual(loaded.execArgv, [...RELAY_NODE_FLAGS, '--import', PROBE], 'the harness runs the relay with the node flags tunnel-node runs with');
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
});
