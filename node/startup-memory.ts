import { createRequire, Module } from 'node:module';
import { getHeapStatistics } from 'node:v8';
import { majorCollector } from '../shared/gc.js';

/**
 * What an idle relay keeps from its start (issue 11: an idle relay at most 60 MB RSS). Applied
 * by node/start-lean.ts, the first module node/main.ts loads; tests call it directly.
 *
 * 1. ssh2 loads two things the relay never runs when its native crypto binding is present:
 *    - lib/protocol/crypto/poly1305.js, an Emscripten WebAssembly module that the pure-JS
 *      chacha20-poly1305 classes use (ChaChaPoly*Native, only chosen when the binding is missing).
 *      ssh2 compiles and instantiates it when it is required, which brings V8's WebAssembly
 *      compilers into memory: about 1.2 MB of an idle relay's RSS, measured.
 *    - cpu-features, a native addon ssh2's lib/protocol/constants.js asks whether the CPU has
 *      AES instructions, to order its default cipher list. The relay passes its own list
 *      (node/ssh-algorithms.ts), so the order is never used; the addon costs about 0.3 MB.
 *    skipUnusedSsh2Parts puts stand-ins for both in the CommonJS module cache before ssh2 loads,
 *    and only if the binding loads here (else ssh2 needs the WebAssembly module, and gets it).
 *    The stand-in of poly1305 throws if it is ever called. An ssh2 upgrade re-checks this
 *    (node/ssh2-internals.ts lists it).
 * 2. One full collection 10 s after the relay is ready (collectStartupGarbage, node/main.ts).
 *    Loading ~160 modules grows V8's young generation to its 16 MB maximum, and V8 shrinks it
 *    again only in a collection made while little is being allocated (over its last 5 s), or
 *    once its memory reducer runs, which a full collection arms. A relay whose start-up ended
 *    without one stayed at about 68-72 MB instead of about 60 for as long as it was idle (one
 *    bench:footprint run in three). Not right at ready: V8 shrinks the young generation in a
 *    collection only while its allocation rate over the last 5 s is low, and start-up's is still
 *    in that window then. It costs 5-20 ms of CPU, once.
 * 3. Modules an idle relay never runs are not loaded: ssh2's Server and key parser are required
 *    from their own files, not from ssh2's entry point (node/ssh2-internals/modules.ts), and the window
 *    budget's clock is process.hrtime, not node:perf_hooks (node/adaptive-window.ts), and
 *    node:http is required, not imported (shared/node-http.ts): on Node 22 and later an ES
 *    import of it loads Node's bundled undici, perf_hooks, http2 and zlib, 11-14 MB.
 * 4. zod is not loaded (about 5 MB of an idle relay's RSS, measured): the relay parses its flags
 *    with plain functions (node/config/values.ts) and reads JSON through protocol/check.ts's checks.
 *    test/node/relay-startup-memory fails if any zod module is loaded.
 *
 * Not done (measured, issue 11): holding V8's optimizing compilers off until the relay is ready
 * (or until its first connection) kept the 3.4-4 MB of their code pages that loading ~160 ES
 * modules brings in out of the idle relay, but the first traffic that makes a function hot brings
 * them in: bench:footprint put the first stream on a fresh relay at 8.6-8.9 MiB with the hold
 * against 3.1-3.4 without, the same total, so a relay that carries traffic saves nothing; and it
 * had to restore V8's tiering defaults by value, which differ between Node majors. Fewer threads (UV_THREADPOOL_SIZE=1,
 * --v8-pool-size=1, --single-threaded-gc) or MALLOC_ARENA_MAX=2 saved at most 0.6 MB each, and
 * would need every launch path to set them. Several spaced full collections while idle (V8
 * flushes bytecode that has not run for --bytecode-old-age mark-compacts), or
 * --bytecode-old-age=1, saved nothing measurable: the idle relay's bytecode is about 0.35 MB.
 */

const require = createRequire(import.meta.url);

/**
 * ssh2's native crypto binding, built by its install script: missing when that script did not run
 * (e.g. `npm install -g` without allowing install scripts), and ssh2 then runs its pure-JS ciphers.
 */
const BINDING = 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';

/** Resolves `specifier` as a require() in `fromFile` would (createRequire(fromFile).resolve); tests pass one that finds nothing. */
export type ResolveFrom = (specifier: string, fromFile: string) => string;

const resolveFrom: ResolveFrom = (specifier, fromFile) => createRequire(fromFile).resolve(specifier);

/** Where each part lives, resolved from this package's ssh2 (cpuFeatures undefined: not installed). */
function resolveFromSsh2(resolveOptional: ResolveFrom): { poly1305: string; constants: string; cpuFeatures?: string } {
  const constants = require.resolve('ssh2/lib/protocol/constants.js');
  let cpuFeatures: string | undefined;
  try {
    cpuFeatures = resolveOptional('cpu-features', constants);
  } catch {
    // An optional dependency of ssh2: npm leaves it out when its native build fails, and ssh2's
    // constants.js then does without it (its require is in a try). No stand-in is needed.
    cpuFeatures = undefined;
  }
  return {
    poly1305: require.resolve('ssh2/lib/protocol/crypto/poly1305.js'),
    constants,
    cpuFeatures,
  };
}

/** Thrown by the poly1305 stand-in: the pure-JS chacha20-poly1305 path ran although the binding loaded. */
export class Poly1305SkippedError extends Error {
  override readonly name = 'Poly1305SkippedError';
  readonly code = 'POLY1305_SKIPPED';
}

/** The stand-in for ssh2's poly1305.js: the Emscripten factory's shape, resolving to a module that cannot be used. */
export function poly1305StandIn(): Promise<{ _malloc(n: number): number; cwrap(...args: unknown[]): () => never }> {
  return Promise.resolve({
    _malloc: () => 0,
    cwrap: () => () => {
      throw new Poly1305SkippedError("ssh2's pure-JS chacha20-poly1305 ran although its native binding is loaded (node/startup-memory.ts)");
    },
  });
}

function standIn(path: string, exports: unknown): void {
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = exports;
  require.cache[path] = m;
}

export type Ssh2Skip = 'skipped' | 'no-binding' | 'too-late';

/**
 * Stand-ins for ssh2's poly1305 WebAssembly module and cpu-features (see above; none for
 * cpu-features when it is not installed). Must run before ssh2 is first loaded ('too-late'
 * otherwise, nothing changed); 'no-binding' when the native binding does not load (nothing
 * changed). `loadBinding` and `resolveOptional` are for tests.
 */
export function skipUnusedSsh2Parts(loadBinding: (specifier: string) => unknown = require, resolveOptional: ResolveFrom = resolveFrom): Ssh2Skip {
  const where = resolveFromSsh2(resolveOptional);
  if (require.cache[where.constants] || require.cache[where.poly1305]) return 'too-late';
  try {
    loadBinding(BINDING); // resolves and loads; throws MODULE_NOT_FOUND when it was never built
  } catch {
    return 'no-binding';
  }
  standIn(where.poly1305, poly1305StandIn);
  if (where.cpuFeatures) standIn(where.cpuFeatures, () => undefined);
  return 'skipped';
}

/** What the start-up collection found and freed (for the log). */
export interface StartupCollection {
  heapUsedBefore: number;
  heapUsedAfter: number;
  ms: number;
}

/** How long after ready node/main.ts runs collectStartupGarbage (see 2. above). */
export const STARTUP_COLLECTION_DELAY_MS = 10_000;

/** One full collection now (see 2. above). */
export function collectStartupGarbage(collect: () => void = majorCollector()): StartupCollection {
  const heapUsedBefore = getHeapStatistics().used_heap_size;
  const t0 = process.hrtime.bigint();
  collect();
  return { heapUsedBefore, heapUsedAfter: getHeapStatistics().used_heap_size, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}
