/** What requestSignal hands out: the request's signal, and `done()` to call once it settled. */
export interface RequestSignal<S extends AbortSignal | undefined> {
  signal: S;
  done(): void;
}

/**
 * One request's signal: `abort` (a stop: a signal that lives as long as the process, the relay or
 * a supervisor) through a listener that `done()` removes once the request settled, and, with
 * `ms`, its own timeout. `AbortSignal.any([abort, timeout])` kept every request's signal among the
 * long-lived one's dependants in Node 20 (about 70 bytes each, never freed: a refused credential
 * polls once a second), and a library handed the long-lived signal itself adds its listeners to
 * it, so the two are joined by hand. Without `abort` nor `ms` there is no signal.
 */
export function requestSignal(abort: AbortSignal | undefined, ms: number): RequestSignal<AbortSignal>;
export function requestSignal(abort: AbortSignal | undefined, ms?: number): RequestSignal<AbortSignal | undefined>;
export function requestSignal(abort: AbortSignal | undefined, ms?: number): RequestSignal<AbortSignal | undefined> {
  const timeout = ms === undefined ? undefined : AbortSignal.timeout(ms);
  if (!abort) return { signal: timeout, done: () => {} };
  const joined = new AbortController();
  const onAbort = () => joined.abort(abort.reason);
  const onTimeout = () => joined.abort(timeout?.reason);
  if (abort.aborted) joined.abort(abort.reason);
  else abort.addEventListener('abort', onAbort, { once: true });
  timeout?.addEventListener('abort', onTimeout, { once: true });
  return {
    signal: joined.signal,
    done: () => {
      abort.removeEventListener('abort', onAbort);
      timeout?.removeEventListener('abort', onTimeout);
    },
  };
}
