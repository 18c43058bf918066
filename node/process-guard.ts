import type { Logger } from '../shared/logger.js';

/**
 * What the relay process does with an error that escaped every handler (`uncaughtException`,
 * `unhandledRejection`). Every ssh2 callback already runs under a FaultGuard
 * (node/fault-guard.ts), so reaching this is a bug; the policy is:
 *
 * - Attributable (raised by code one connection started, found through the guard's
 *   AsyncLocalStorage): log it with that session id, count it, close that connection, keep
 *   serving everyone else. A relay carries every tunnel of its node; one client must not be
 *   able to end them all.
 * - Unattributable: log it and count it, and keep running, because the relay's shared state
 *   (listeners, registry, reporter) is guarded by its own code paths and a crash would cut
 *   every tunnel for what is most likely one bad timer or callback. But more than
 *   `maxUnattributed` of them within `windowMs` means the process is failing on its own: exit
 *   with code 70 (EX_SOFTWARE) so the supervisor restarts a clean process, rather than limp.
 */
export interface ProcessGuardOptions {
  logger: Logger;
  /** The relay's attribution (Relay#absorbUncaught): true when a connection took the blame. */
  absorb(err: unknown, origin: string): boolean;
  maxUnattributed: number;
  windowMs: number;
  exit(code: number): void;
  now?: () => number;
}

export const EXIT_TOO_MANY_ERRORS = 70;

/** Installs the handlers on `proc` (the process); returns a function that removes them. */
export function installProcessGuard(o: ProcessGuardOptions, proc: NodeJS.EventEmitter = process): () => void {
  const now = o.now ?? Date.now;
  let recent: number[] = [];
  const handle = (err: unknown, origin: string) => {
    let attributed = false;
    try {
      attributed = o.absorb(err, origin);
    } catch {
      attributed = false;
    }
    if (attributed) return;
    const t = now();
    recent = recent.filter((x) => t - x < o.windowMs);
    recent.push(t);
    if (recent.length > o.maxUnattributed) {
      o.logger.error('too many errors outside any connection; exiting so a clean process is started', { errors: recent.length, windowMs: o.windowMs });
      o.exit(EXIT_TOO_MANY_ERRORS);
    }
  };
  const onException = (err: unknown) => handle(err, 'uncaughtException');
  const onRejection = (reason: unknown) => handle(reason, 'unhandledRejection');
  proc.on('uncaughtException', onException);
  proc.on('unhandledRejection', onRejection);
  return () => {
    proc.off('uncaughtException', onException);
    proc.off('unhandledRejection', onRejection);
  };
}
