import type { Logger } from '../shared/logger.js';
import type { FaultGuard, FaultPoint } from './fault-guard.js';
import type { BoundExposures } from './forwarding/bound-exposures.js';
import type { DirectChannels } from './forwarding/direct-channels.js';

/** What a closed connection (node/connection.ts) gives its close report. */
export interface CloseReport {
  log: Logger;
  leaseId: string | undefined;
  /** Its two sides, whose bridges left at the close (what a peer sent before its CLOSE) are waited for. */
  direct: DirectChannels | undefined;
  exposures: BoundExposures;
  /** Its byte totals now: each bridge adds its bytes at its own close. */
  totals(): { bytesIn: number; bytesOut: number };
  /** The connection's guard: each step runs under it (a throw is a fault of the connection, logged and counted). */
  guard: FaultGuard;
  /** Test-only fault injection (`--test-fault close-report`). */
  inject(point: FaultPoint): void;
  /** Once the left bridges have closed: gives back what LeaseRegistry.holdLeft keeps for them. */
  releaseLeft(): void;
  /** Once the left bridges have closed: the conn_close event, with the totals. */
  closed(totals: { bytesIn: number; bytesOut: number }): void;
}

/**
 * Logs a connection's close, and reports its byte totals (conn_close, and a log line) once the
 * bridges left at its close (DirectChannels.abortAll, BoundExposures.endBridges) have closed too:
 * each counts its bytes at its close, so reported at once, the totals missed whatever those carried.
 *
 * The report waits for three parts (Y's bridges, X's, this call). Each step runs on its own: a
 * throw while one part is asked ends that part's wait (what it would have waited for goes
 * uncounted; the fault is logged), and one in the last steps skips only itself. A throw used to
 * leave the report waiting for good: no conn_close, and the registry's held cut never given back.
 */
export function reportClose(o: CloseReport): void {
  const ran = (step: () => void): boolean => {
    let done = false;
    o.guard.run('close', () => {
      step();
      done = true;
    });
    return done;
  };
  let waiting = 3;
  let left = 0;
  const counted = () => {
    if (--waiting > 0) return;
    ran(() => o.releaseLeft());
    if (left > 0) ran(() => o.log.info('connection bytes counted', { leaseId: o.leaseId, ...o.totals() }));
    ran(() => o.closed(o.totals()));
  };
  // Each part counts once, whether its side calls it (when its last left bridge closed) or its step threw.
  const part = () => {
    let once = false;
    return () => {
      if (once) return;
      once = true;
      counted();
    };
  };
  const ys = part();
  const xs = part();
  const askedY = ran(() => {
    if (o.direct) left += o.direct.whenLeftClosed(ys);
    else ys();
  });
  if (!askedY) ys();
  const askedX = ran(() => {
    o.inject('close-report');
    left += o.exposures.whenLeftClosed(xs);
  });
  if (!askedX) xs();
  ran(() => o.log.info('connection closed', { leaseId: o.leaseId, ...o.totals(), ...(left > 0 ? { bridgesLeft: left } : {}) }));
  counted();
}
