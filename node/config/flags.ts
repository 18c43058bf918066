import { FAULT_SPECS } from '../fault-guard.js';

/**
 * The relay's flags: each one's name, `TUNNEL_*` environment variable, default and help line,
 * and the --help text made from them. What the values mean is node/config/fields.ts's business.
 */

/** Every option: flag name, env name, default, and the one-line help. */
export const OPTIONS = {
  'control-url': {
    env: 'TUNNEL_CONTROL_URL',
    help: 'control plane base URL, e.g. https://control.example:8080 (required); several replicas comma-separated, tried in order',
  },
  'ca-file': { env: 'TUNNEL_CA_FILE', help: "verify the control plane's certificate with the CA certificates in this PEM file instead of the system CAs" },
  'ca-pin': { env: 'TUNNEL_CA_PIN', help: "verify the control plane by its certificate's key pin (sha256:HEX, printed by tunnel-control); stored in the data dir at enrollment" },
  'data-dir': { env: 'TUNNEL_DATA_DIR', help: 'where the node id, credential, host key and trust pin live (default $XDG_DATA_HOME/tunnel/node, i.e. ~/.local/share/tunnel/node; /var/lib/tunnel-node under systemd)' },
  listen: { env: 'TUNNEL_LISTEN', def: '0.0.0.0:2222', help: 'SSH listen address host:port' },
  advertise: { env: 'TUNNEL_ADVERTISE', help: 'host:port clients use to reach this relay (default: --listen unless it is a wildcard)' },
  'metrics-listen': { env: 'TUNNEL_METRICS_LISTEN', def: '127.0.0.1:9090', help: '/healthz and /metrics listen address host:port (loopback unless you choose otherwise)' },
  'health-detail': {
    env: 'TUNNEL_HEALTH_DETAIL',
    def: 'loopback',
    help: 'who may read /healthz?detail=1 (node id, exposure names, lease ids): loopback, all or off',
  },
  'enroll-token': { env: 'TUNNEL_ENROLL_TOKEN', help: 'one-time enrollment token (needed on the first start only)' },
  'keepalive-interval': { env: 'TUNNEL_KEEPALIVE_INTERVAL', def: '5s', help: 'SSH keepalive interval' },
  'keepalive-count-max': { env: 'TUNNEL_KEEPALIVE_COUNT_MAX', def: '3', help: 'unanswered keepalives before a peer is dropped' },
  'login-grace-time': { env: 'TUNNEL_LOGIN_GRACE_TIME', def: '20s', help: 'time from TCP accept until authentication must be complete (LoginGraceTime)' },
  'max-startups': {
    env: 'TUNNEL_MAX_STARTUPS',
    def: '100:30:500',
    help: 'unauthenticated connections START:RATE:FULL as in OpenSSH MaxStartups: from START on, new ones are dropped with RATE% probability, rising to 100% at FULL',
  },
  'per-source-max-startups': { env: 'TUNNEL_PER_SOURCE_MAX_STARTUPS', def: '20', help: 'unauthenticated connections per source address (an IPv6 /64 is one source)' },
  'open-timeout': { env: 'TUNNEL_OPEN_TIMEOUT', def: '10s', help: 'how long X may take to accept a forwarded channel' },
  'drain-timeout': { env: 'TUNNEL_DRAIN_TIMEOUT', def: '30s', help: 'how long shutdown waits for live channels, and for what clients that hung up sent to reach X or the egress target, before it cuts them' },
  'revocation-poll-interval': {
    env: 'TUNNEL_REVOCATION_POLL_INTERVAL',
    def: '1s',
    help: 'revocation feed: least time between polls that brought nothing, and the longest retry delay after a failure (half of it to all of it, at random)',
  },
  'revocation-wait': {
    env: 'TUNNEL_REVOCATION_WAIT',
    def: '20s',
    help: 'how long the control plane may hold a revocation poll open until there is news (long poll, at most 25s; 0 polls plainly)',
  },
  'revocation-max-stale': {
    env: 'TUNNEL_REVOCATION_MAX_STALE',
    def: '5m',
    help: 'how long the relay goes on carrying and admitting leases without an answered revocation poll (it cannot learn revocations meanwhile); past it, it closes every connection and admits none until the feed answers again (at least 1s and twice --revocation-wait; off: until each lease expires)',
  },
  'jwks-refresh-interval': { env: 'TUNNEL_JWKS_REFRESH_INTERVAL', def: '5m', help: 'scheduled JWKS refresh interval' },
  'jwks-min-refresh-interval': { env: 'TUNNEL_JWKS_MIN_REFRESH_INTERVAL', def: '10s', help: 'minimum time between refreshes on an unknown key id, and the least retry delay after a failed refresh (plus up to 50% at random; longer if control sends Retry-After)' },
  'heartbeat-interval': { env: 'TUNNEL_HEARTBEAT_INTERVAL', def: '15s', help: 'heartbeat interval' },
  'events-flush-interval': { env: 'TUNNEL_EVENTS_FLUSH_INTERVAL', def: '1s', help: 'connection event batch interval' },
  'events-queue-max': { env: 'TUNNEL_EVENTS_QUEUE_MAX', def: '10000', help: 'events kept while the control plane is unreachable (when full, the oldest event of the member holding the most is dropped)' },
  'max-channels-per-connection': { env: 'TUNNEL_MAX_CHANNELS_PER_CONNECTION', def: '256', help: 'open channels per SSH connection' },
  'max-channels-per-opener': {
    env: 'TUNNEL_MAX_CHANNELS_PER_OPENER',
    def: '64',
    help: "one user's share of an exposing connection's channels (so one Y cannot take all --max-channels-per-connection)",
  },
  'max-channels-per-member': {
    env: 'TUNNEL_MAX_CHANNELS_PER_MEMBER',
    def: '256',
    help: "channels one user (a lease's subject) may have open or opening through this relay, all its connections together (each may hold up to its 2 MiB window in the relay, within --channel-memory)",
  },
  'channel-memory': {
    env: 'TUNNEL_CHANNEL_MEMORY',
    def: '256MiB',
    help: "channel data all channels together may hold in the relay beyond 64 KiB each (what peers may send before the relay reads it: up to the standard 2 MiB window per channel while there is room, 64 KiB once it is spent); one user's channels, all its connections together, at most a quarter of it (at least one channel's window)",
  },
  'channel-idle-timeout': { env: 'TUNNEL_CHANNEL_IDLE_TIMEOUT', def: '1h', help: 'close a bridged channel that moved no data either way for this long (off: never)' },
  'max-pending-opens': { env: 'TUNNEL_MAX_PENDING_OPENS', def: '32', help: 'channel opens waiting for X, per connection' },
  'max-connections-per-lease': { env: 'TUNNEL_MAX_CONNECTIONS_PER_LEASE', def: '4', help: 'SSH connections sharing one lease' },
  'max-connections-per-member': {
    env: 'TUNNEL_MAX_CONNECTIONS_PER_MEMBER',
    def: '1024',
    help: "authenticated SSH connections of one user (a lease's subject), all its leases together; more: authentication refused",
  },
  'max-auth-attempts': { env: 'TUNNEL_MAX_AUTH_ATTEMPTS', def: '6', help: 'failed authentication attempts per connection (every method but a first none counts)' },
  'auth-failures-per-minute': { env: 'TUNNEL_AUTH_FAILURES_PER_MINUTE', def: '30', help: 'failed authentications per source address per minute' },
  'max-rekeys-per-minute': {
    env: 'TUNNEL_MAX_REKEYS_PER_MINUTE',
    def: '60',
    help: 'key exchanges after the first one connection may make per minute (each costs the relay a signature and a key agreement); more: disconnect',
  },
  'max-renewals-per-minute': {
    env: 'TUNNEL_MAX_RENEWALS_PER_MINUTE',
    def: '60',
    help: 'in-band lease renewals one connection may make per minute (each costs the relay two signature verifications; the CLI renews at most once a second); more: disconnect',
  },
  'max-forwards-per-minute': {
    env: 'TUNNEL_MAX_FORWARDS_PER_MINUTE',
    def: '60',
    help: 'port-forwarding requests (tcpip-forward, cancel-tcpip-forward, and the streamlocal ones, refused) one connection may make per minute (each exposure bound or unbound is an event the control plane records; the CLI and ssh -R make one per exposure); more: disconnect',
  },
  'max-send-buffer': {
    env: 'TUNNEL_MAX_SEND_BUFFER',
    def: '1MiB',
    help: 'bytes queued for one SSH peer (socket plus ssh2 queues) before the relay stops feeding it; at twice this it also stops reading from it',
  },
  'send-stall-timeout': { env: 'TUNNEL_SEND_STALL_TIMEOUT', def: '60s', help: 'a peer over --max-send-buffer that takes none of it for this long is disconnected; also how long a channel whose peer closed it and hung up has to deliver what that peer sent' },
  'window-budget': {
    env: 'TUNNEL_WINDOW_BUDGET',
    def: '128MiB',
    help: "memory all channels with Tunnel's own CLI may hold above the standard 2 MiB SSH window together (adaptive windows for long-distance throughput; one member's channels, all its connections together, get at most a quarter of it, or one channel's growth if more; 0: off, every peer gets the standard window)",
  },
  'gc-every': {
    env: 'TUNNEL_GC_EVERY',
    def: '1MiB',
    help: "collect V8's young generation after this many bytes read from SSH peers (frees ssh2's per-packet buffers promptly: the relay's memory under traffic; 0: V8 alone decides)",
  },
  'gc-full-after': {
    env: 'TUNNEL_GC_FULL_AFTER',
    def: '0',
    help: "with --gc-every: a full collection instead once the memory held in Buffers, less what open bridges and their send queues hold, has grown this much (plus half its lowest level) since the last one, at most one a second and one per 256 MiB read (frees packets V8 promoted to its old generation, which young collections never free; costs CPU; 0: V8 alone decides)",
  },
  'gc-full-burst': {
    env: 'TUNNEL_GC_FULL_BURST',
    def: '0',
    help: "with --gc-every: once open bridges and their send queues held at least this much at a paced collection and have drained (to a quarter of it), the next paced collection is a full one, at most one a second and one per 256 MiB read (frees the packets the burst held, which V8 promoted; 0: off)",
  },
  'max-channel-window': {
    env: 'TUNNEL_MAX_CHANNEL_WINDOW',
    def: '32MiB',
    help: "largest SSH window one channel with Tunnel's own CLI may grow to (at least 2MiB, the standard window; OpenSSH and other clients always get the standard window)",
  },
  'egress-driver': { env: 'TUNNEL_EGRESS_DRIVER', def: 'iptables', help: 'egress lock: iptables (needs root or CAP_NET_ADMIN) or off (no kernel enforcement; reported loudly)' },
  'egress-uid': { env: 'TUNNEL_EGRESS_UID', help: "uid whose outbound traffic the egress chain filters (default: the relay process's own uid)" },
  'egress-source-ports': { env: 'TUNNEL_EGRESS_SOURCE_PORTS', def: 'off', help: 'FIRST-LAST local ports split into per-lease blocks matched by --sport (outside ip_local_port_range), or off' },
  'egress-ports-per-lease': { env: 'TUNNEL_EGRESS_PORTS_PER_LEASE', def: '64', help: 'size of each lease\'s source-port block' },
  'egress-connect-timeout': { env: 'TUNNEL_EGRESS_CONNECT_TIMEOUT', def: '10s', help: 'how long a connection to an egress target may take' },
  'test-fault': { env: 'TUNNEL_TEST_FAULT', help: `testing only: throw an injected error at POINT,... on connections of user fault-POINT (${FAULT_SPECS.join(', ')})` },
} as const satisfies Record<string, { env: string; def?: string; help: string }>;

export type OptionName = keyof typeof OPTIONS;

/** --help: one row per option, in OPTIONS's order, then the two boolean flags. */
export function helpText(): string {
  const rows = Object.entries(OPTIONS).map(([flag, o]) => {
    const def = 'def' in o ? ` (default ${o.def})` : '';
    return `  --${flag.padEnd(28)} ${o.help}${def}; env ${o.env}`;
  });
  return [
    'usage: tunnel-node [options]',
    '',
    'Runs a Tunnel relay node.',
    '',
    ...rows,
    `  --${'insecure-http'.padEnd(28)} allow a plain http:// --control-url that is not loopback (credentials cross the network in clear); env TUNNEL_INSECURE_HTTP=1`,
    '  --help                       show this help',
    '',
  ].join('\n');
}
