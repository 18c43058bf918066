import type { LeftCutReason } from '../leases/lease-registry.js';
import type { BoundExposures } from './bound-exposures.js';
import type { DirectChannels } from './direct-channels.js';
import type { ForwardingHost } from './forwarding-host.js';

/**
 * The bridges a closed connection left to deliver what its peer sent before its CLOSE
 * (DirectChannels.abortAll, BoundExposures.endBridges) end now: a lease it presented was revoked
 * or expired, or the relay stops (LeaseRegistry.holdLeft). Logged (one line: the reason, the
 * lease id, how many) and counted (tunnel_node_left_bridges_cut_total{reason}, by bridge), as a
 * live connection closed for its lease is ('closing connection', lease_closures_total): a
 * revocation or an expiry that found only such bridges left no trace (nor did --send-stall-timeout
 * running out for them: DirectChannels, BoundExposures). Each step on its own
 * (`each`: a throw is a fault of the connection, and the steps after it still run).
 */
/** Why left bridges are cut: LeaseRegistry.holdLeft's reasons, or --send-stall-timeout ran out for them. */
export type LeftBridgesCutReason = LeftCutReason | 'send_stalled';

/** One 'left bridges cut' line and the count, for `bridges` (> 0) of the connection of `host` cut for `reason`. */
export function noteLeftBridgesCut(host: ForwardingHost, reason: LeftBridgesCutReason, bridges: number): void {
  if (bridges === 0) return;
  host.log.info('left bridges cut', { reason, leaseId: host.lease()?.leaseId, bridges });
  host.ctx.metrics.leftBridgesCut.inc({ reason }, bridges);
}

export function cutLeftBridges(
  host: ForwardingHost,
  sides: { direct: DirectChannels | undefined; exposures: BoundExposures },
  reason: LeftCutReason,
  each: (...steps: (() => void)[]) => void,
): void {
  const bridges = (sides.direct?.count ?? 0) + sides.exposures.leftCount;
  each(
    () => noteLeftBridgesCut(host, reason, bridges),
    () => sides.direct?.abortAll(),
    () => sides.exposures.cutLeft(),
  );
}
