import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Exception safety for ssh2 callbacks. Every handler the relay gives ssh2 (and every callback
 * of a promise, timer or stream it starts for a connection) can throw, and ssh2 catches only
 * what is thrown synchronously inside its packet parser. A `FaultGuard` runs each handler so
 * that a throw or a rejected promise becomes a fault of the connection that owns it (logged
 * with its session id, counted, that connection closed) instead of a crash of the relay.
 *
 * The owner is also put in an AsyncLocalStorage for the duration of the handler. Node carries
 * it into every promise, timer and immediate the handler starts, and it is still set when the
 * process-level guard (node/process-guard.ts) runs for an error that escaped every handler, so
 * such an error can be attributed to its connection too. Shared services that a connection's
 * handler merely calls (the event reporter, the JWKS cache) catch their own errors.
 */
export interface FaultOwner {
  readonly sessionId: string;
  /** A bug in this owner's code: log it, count it, close the owner. Must not throw. */
  fault(err: unknown, where: string): void;
}

const scope = new AsyncLocalStorage<FaultOwner>();

/** The connection whose code is running now (or whose handler started what is running now). */
export function currentFaultOwner(): FaultOwner | undefined {
  return scope.getStore();
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

export class FaultGuard {
  readonly #owner: FaultOwner;
  constructor(owner: FaultOwner) {
    this.#owner = owner;
  }

  /** Runs `fn` as the owner; a throw or a rejection of what it returns is a fault at `where`. */
  run(where: string, fn: () => unknown): void {
    scope.run(this.#owner, () => {
      try {
        const r = fn();
        if (isThenable(r)) r.then(undefined, (err: unknown) => this.#report(err, where));
      } catch (err) {
        this.#report(err, where);
      }
    });
  }

  /** `fn` as a callback that never throws into its caller (ssh2, a stream, a timer). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void {
    return (...args: A) => this.run(where, () => fn(...args));
  }

  #report(err: unknown, where: string): void {
    try {
      this.#owner.fault(err, where);
    } catch {
      // The owner's fault handler must not throw; if it does there is nothing left to tell.
    }
  }
}

/**
 * Test-only fault injection (`--test-fault`, node/config/fields.ts): called at named points of a
 * connection's handlers; throws (or schedules a throw) for the points it was configured with.
 */
export type FaultInjector = (point: FaultPoint, who: { username: string }) => void;
/**
 * `bridge-open`: Y's side, after Y's channel is confirmed and its slots taken, before its bridge
 * exists; `forward-open`: X's side, once X confirmed a forwarded channel, before it is handed on;
 * `close-bridges`: the connection's close (its end() and its socket's close), before its bridges end;
 * `channel-open`: a channel open of a type ssh2 refuses on its own (session, x11, ...), as it is counted;
 * `close-report`: the report of a closed connection (node/close-report.ts), before X's bridges are asked.
 */
export const FAULT_POINTS = ['authentication', 'ready', 'request', 'tcpip', 'bridge-open', 'forward-open', 'bridge-close', 'close-bridges', 'channel-open', 'close-report'] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];
/** A configured fault: `POINT` throws inside the handler, `escape-POINT` throws from outside it. */
export type FaultSpec = FaultPoint | `escape-${FaultPoint}`;
export const FAULT_SPECS: readonly FaultSpec[] = FAULT_POINTS.flatMap((p) => [p, `escape-${p}` as const]);

/**
 * The injector for `--test-fault SPEC,...`: it fires only on connections whose user name is
 * `fault-SPEC`, so a test picks the one connection that fails. `escape-POINT` throws from a
 * setImmediate scheduled inside the handler, which no handler's try/catch sees: only the
 * process-level guard does. Never active unless the flag is given.
 */
export function createFaultInjector(specs: readonly FaultSpec[]): FaultInjector | undefined {
  if (specs.length === 0) return undefined;
  const enabled = new Set<string>(specs);
  return (point, who) => {
    if (enabled.has(point) && who.username === `fault-${point}`) throw new Error(`injected fault at ${point} (--test-fault)`);
    const escape = `escape-${point}`;
    if (enabled.has(escape) && who.username === `fault-${escape}`) {
      const err = new Error(`injected fault at ${escape} (--test-fault)`);
      setImmediate(() => {
        throw err;
      });
    }
  };
}
