/**
 * The bench's delay line (delay-line.ts) in a child process of its own, so that it does not
 * share an event loop with the bench's source and sink (a busy loop fires the line's timers late,
 * which lengthens the round trip it adds), and so that its CPU shows apart (`pid`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { DelayLineOptions } from './delay-line.js';

export type ToChild = { type: 'set'; id: number; ms: number } | { type: 'stats'; id: number } | { type: 'close' };
export type FromChild = { type: 'ready'; port: number } | { type: 'done'; id: number; connections: number; peakQueuedBytes: number };

export interface DelayLineStats {
  connections: number;
  peakQueuedBytes: number;
}

export interface DelayLineProcess {
  port: number;
  pid: number;
  /** Changes the delay for chunks read from now on; resolves once the child applied it. */
  setOneWayMs(ms: number): Promise<DelayLineStats>;
  stats(): Promise<DelayLineStats>;
  /** Closes every connection and waits for the child to exit; idempotent. */
  close(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./delay-line-child.js', import.meta.url));

export async function startDelayLineProcess(o: DelayLineOptions, timeoutMs = 10_000): Promise<DelayLineProcess> {
  if (!(o.oneWayMs >= 0)) throw new RangeError('oneWayMs >= 0');
  const child: ChildProcess = fork(CHILD, [JSON.stringify(o)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const killOnExit = () => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit');
  let nextId = 1;
  const waiting = new Map<number, (s: DelayLineStats) => void>();
  let ready: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (ready = resolve));
  child.on('message', (m: FromChild) => {
    if (m.type === 'ready') ready(m.port);
    else waiting.get(m.id)?.({ connections: m.connections, peakQueuedBytes: m.peakQueuedBytes });
  });
  const within = <T>(p: Promise<T>, what: string): Promise<T> =>
    Promise.race([
      p,
      exited.then(() => Promise.reject(new Error(`delay line process exited before ${what}`))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`delay line process: no ${what} within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
  const ask = (m: { type: 'set'; ms: number } | { type: 'stats' }) => {
    const id = nextId++;
    const answer = new Promise<DelayLineStats>((resolve) => waiting.set(id, resolve));
    child.send({ ...m, id } satisfies ToChild);
    return within(answer, m.type).finally(() => waiting.delete(id));
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.connected) child.send({ type: 'close' } satisfies ToChild);
        await within(exited, 'exit').catch(() => {
          child.kill('SIGKILL');
          return exited;
        });
      }
      process.off('exit', killOnExit);
    })());
  try {
    return {
      port: await within(port, 'listening port'),
      pid: child.pid!,
      setOneWayMs: (ms) => {
        if (!(ms >= 0)) return Promise.reject(new RangeError('oneWayMs >= 0'));
        return ask({ type: 'set', ms });
      },
      stats: () => ask({ type: 'stats' }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
