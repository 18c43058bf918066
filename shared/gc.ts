import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * V8's gc() without --expose-gc on the command line, for the processes that collect at moments
 * they choose: the relay (node/gc-pacer.ts, node/startup-memory.ts), the CLI, and the control
 * plane when it goes quiet (control/idle-collection.ts).
 */
export function gcFunction(): (o?: object) => void {
  const exposed = (globalThis as { gc?: (o?: object) => void }).gc;
  let gc = exposed;
  if (typeof gc !== 'function') {
    // The documented way to reach V8's gc extension at run time: expose it, take the function
    // from a fresh context (the flag applies to contexts created after it), and stop exposing it.
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as (o?: object) => void;
    setFlagsFromString('--no-expose-gc');
  }
  return gc;
}

/**
 * A full (mark-compact) collection of this isolate, now, without --expose-gc on the command line.
 * gc() without options: Node 20's V8 runs a scavenge for any options object, `{ type: 'major' }`
 * included (node/startup-memory.test.ts sees the kind of collection).
 */
export function majorCollector(): () => void {
  const gc = gcFunction();
  return () => gc();
}
