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
 */
export const RELAY_NODE_FLAGS = ['--single-threaded'] as const;
