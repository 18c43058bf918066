/**
 * The node flags tunnel-node runs with: node/main.ts's first lines exec node with exactly these
 * when tunnel-node is run as a program (`tunnel-node`, its npm bin; a test holds the two to each
 * other), and the container's compose file and the test and bench harnesses pass them.
 *
 * `--single-threaded`: V8 does its optimizing compiles and its collections on the main thread.
 * With its defaults it compiles the relay's data path on a worker thread when the first stream
 * makes it hot, and the compiler's zones (about 2.3 MB at once, heaptrack) came from that thread's
 * own malloc arena, which keeps its high-water mark beside the main one: the first saturated
 * stream on a fresh relay measured 5.6-5.9 MiB (median) above the idle relay against 2.0-2.4 with
 * the flag (issue 11, docs/performance.md, "One thread for V8"). A V8 flag set at run time is too
 * late for this: V8 decides at start whether it compiles on other threads.
 *
 * `--no-maglev`: hot functions go from V8's baseline code straight to TurboFan, as on Node 20
 * (whose V8 has Maglev off by default). On Node 24 the ES module loader's functions made hot by
 * loading the relay's modules were compiled by Maglev, whose code in the node binary (about 1.8
 * MB of pages) then stayed in the idle relay's RSS, and a stream's hot data path paged in the same
 * again beside TurboFan's: bench:footprint on Node 24, idle relay 71.6 MB against 73.3, the first
 * stream on a fresh relay 3.5 / 3.9 MiB against 4.6 / 5.2, and no more relay CPU per GiB
 * (docs/performance.md, "Start-up and the idle relay"). Node 20 accepts the flag and is unchanged.
 */
export const RELAY_NODE_FLAGS = ['--single-threaded', '--no-maglev'] as const;
