// The relay's metrics on the shared Prometheus registry (shared/prometheus.ts).
import { MetricsRegistry } from '../shared/prometheus.js';

/** The relay's counters. Gauges are registered by createRelay, which owns the state they read. */
export function createRelayMetrics(registry = new MetricsRegistry()) {
  let sendPeak = 0;
  registry.gauge('tunnel_node_send_buffer_peak_bytes', 'Largest send buffer (socket plus ssh2 queues) any one connection had since start', () => sendPeak);
  return {
    /** Records one connection's send buffer; the gauge keeps the largest. */
    notePeakSendBuffer(bytes: number): void {
      if (bytes > sendPeak) sendPeak = bytes;
    },
    registry,
    authFailures: registry.counter('tunnel_node_auth_failures_total', 'Refused authentications by reason'),
    authSuccesses: registry.counter('tunnel_node_auth_successes_total', 'Accepted authentications by lease kind'),
    rateLimited: registry.counter('tunnel_node_rate_limited_connections_total', 'Connections dropped by the per-address auth failure limit'),
    preauthDrops: registry.counter(
      'tunnel_node_preauth_drops_total',
      'Connections closed before authentication by reason (max_startups, max_startups_random, per_source, login_grace, auth_rate_limited, draining, credential_rejected, revocations_stale)',
    ),
    connections: registry.counter('tunnel_node_connections_total', 'Accepted TCP connections'),
    refusedRequests: registry.counter('tunnel_node_refused_requests_total', 'Refused channel and global requests by type'),
    channels: registry.counter(
      'tunnel_node_bridged_channels_total',
      "Bridged channels by outcome: opened; abandoned (Y's connection gone or closing when the other side answered); an open to an exposure that failed (open_timeout, open_failed, exposure_full, opener_share); a bridge that closed (eof, closed, error, aborted, idle_timeout)",
    ),
    bytes: registry.counter('tunnel_node_bytes_total', 'Bytes bridged by direction'),
    leaseClosures: registry.counter('tunnel_node_lease_closures_total', 'Connections closed for lease expiry or revocation'),
    leftBridgesCut: registry.counter(
      'tunnel_node_left_bridges_cut_total',
      'Bridges a closed connection left to deliver what its peer sent before its CLOSE, cut when a lease it presented was revoked or expired, the relay stopped, or --send-stall-timeout ran out for them, by reason',
    ),
    renewals: registry.counter('tunnel_node_lease_renewals_total', 'In-band lease renewals by result'),
    egressDials: registry.counter('tunnel_node_egress_dials_total', 'Egress target connections by outcome'),
    keepaliveTimeouts: registry.counter('tunnel_node_keepalive_timeouts_total', 'Connections dropped for missed keepalives'),
    handlerFaults: registry.counter('tunnel_node_handler_faults_total', 'Bugs caught in a connection handler (the connection was closed) by where'),
    uncaughtErrors: registry.counter('tunnel_node_uncaught_errors_total', 'Errors that escaped every handler, by whether they were attributed to a connection'),
    sendThrottled: registry.counter('tunnel_node_send_throttled_total', 'Times a connection went over --max-send-buffer and stopped being fed'),
    sendReadPaused: registry.counter('tunnel_node_send_read_paused_total', 'Times the relay stopped reading a peer at twice --max-send-buffer'),
    sendStallDisconnects: registry.counter('tunnel_node_send_stall_disconnects_total', 'Peers disconnected for taking nothing from a full send buffer for --send-stall-timeout'),
  };
}
export type RelayMetrics = ReturnType<typeof createRelayMetrics>;
