/**
 * The start/cleanup scaffolding every benchmark shares: cleanups registered as things start run
 * in reverse order on success, on failure and on Ctrl-C/SIGTERM; the process exits 0, 1 (with
 * the error on stderr) or 130.
 */
export interface Cleanups {
  /** Runs `fn` at the end (last added, first run); its failure is ignored. */
  add(fn: () => unknown): void;
}

export function runBench(name: string, body: (cleanups: Cleanups) => Promise<void>): void {
  const fns: (() => unknown)[] = [];
  let ran: Promise<void> | undefined;
  const cleanup = () =>
    (ran ??= (async () => {
      for (const fn of fns.reverse()) {
        try {
          await fn();
        } catch {
          /* best effort: keep cleaning up */
        }
      }
    })());
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  body({ add: (fn) => void fns.push(fn) })
    .finally(async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await cleanup();
    })
    .then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(1);
      },
    );
}
