import { xdgBaseDir } from '../shared/xdg-base-dir.js';
import { formatHostPort, parseHostPort, type HostPort } from '../protocol/host-port.js';
import { EGRESS_DRIVERS, type EgressDriver } from '../protocol/lease-claims-check.js';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FAULT_SPECS, type FaultSpec } from './fault-guard.js';
import { checkServerUrl, parsePin, TrustError } from '../protocol/tls-trust.js';

/**
 * The relay's configuration, parsed once at boot from flags and `TUNNEL_*` environment
 * variables (flag wins). Everything else receives the frozen `Config`.
 */

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}


/** Every option: flag name, env name, default, and the one-line help. */
const OPTIONS = {
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
  'max-auth-attempts': { env: 'TUNNEL_MAX_AUTH_ATTEMPTS', def: '6', help: 'failed publickey attempts per connection' },
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

type OptionName = keyof typeof OPTIONS;

/**
 * Each option's parser, run in this order on the raw string (undefined when not given and no
 * default): the first one that fails ends the parse with its message. Plain functions, not zod:
 * an idle relay does not load zod (issue 11, idle relay RSS).
 */
const fail = (message: string): never => {
  throw new ConfigError(message);
};
/** The raw value when given; `message` when not. */
const given = (s: string | undefined, message: string): string => s ?? fail(message);
/** A string option that, when given, must not be empty (zod's default message, as before). */
const nonEmpty = (s: string | undefined): string | undefined => (s === '' ? fail('Too small: expected string to have >=1 characters') : s);

const hostPort =
  (name: string) =>
  (s: string | undefined): HostPort => {
    // An empty host (`:2222`) listens on every IPv4 address; port 0 takes any free port.
    const hp = s === undefined ? undefined : parseHostPort(s, { defaultHost: '0.0.0.0', allowZero: true });
    if (!hp || !s!.includes(':')) return fail(`--${name} must be host:port, e.g. 127.0.0.1:2222`);
    return hp;
  };

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Milliseconds, or NaN when `s` is not a duration. */
const millis = (s: string): number => {
  const m = DURATION_RE.exec(s.trim());
  return m ? Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's') as keyof typeof DURATION_UNITS]) : NaN;
};

const duration =
  (name: string) =>
  (s: string | undefined): number => {
    const ms = s === undefined ? NaN : millis(s);
    return Number.isNaN(ms) ? fail(`--${name} must be a duration such as 500ms, 5s, 2m`) : ms;
  };

const count =
  (name: string, min: number) =>
  (s: string | undefined): number => {
    const n = Number(s);
    if (s === undefined || !Number.isInteger(n) || n < min) return fail(`--${name} must be an integer >= ${min}`);
    return n;
  };

const size =
  (name: string, min: number) =>
  (s: string | undefined): number => {
    const m = s === undefined ? null : /^(\d+)(B|KiB|MiB|GiB)?$/.exec(s.trim());
    const n = m ? Number(m[1]) * { B: 1, KiB: 1024, MiB: 1 << 20, GiB: 1 << 30 }[(m[2] ?? 'B') as 'B' | 'KiB' | 'MiB' | 'GiB'] : NaN;
    if (!Number.isSafeInteger(n) || n < min) return fail(`--${name} must be a size of at least ${min} bytes, such as 4MiB or 512KiB`);
    return n;
  };

const oneOf =
  <T extends string>(values: readonly T[], message: string) =>
  (s: string | undefined): T =>
    values.includes(s as T) ? (s as T) : fail(message);

const FIELDS = {
  // One URL, or several replicas separated by commas (tried in order; see control-client.ts).
  'control-url': (s: string | undefined): string[] => {
    const urls = given(s, 'set --control-url or TUNNEL_CONTROL_URL to the control plane URL, e.g. http://127.0.0.1:8080')
      .split(',')
      .map((u) => u.trim().replace(/\/+$/, ''));
    if (urls.length > 8) fail('--control-url takes at most 8 comma-separated URLs');
    else if (!urls.every((u) => URL.canParse(u))) fail('--control-url must be a URL such as http://127.0.0.1:8080 (several: comma-separated)');
    else if (!urls.every((u) => /^https?:$/.test(new URL(u).protocol))) fail('--control-url must be http:// or https://');
    return urls;
  },
  'ca-file': nonEmpty,
  'ca-pin': (s: string | undefined): string | undefined => {
    if (s === undefined) return undefined;
    try {
      return parsePin(s);
    } catch (err) {
      return fail(`--ca-pin: ${(err as Error).message}`);
    }
  },
  'data-dir': (s: string | undefined): string => (s ? s : fail('--data-dir must not be empty')),
  listen: hostPort('listen'),
  advertise: (s: string | undefined) => s,
  'metrics-listen': hostPort('metrics-listen'),
  'health-detail': oneOf(['off', 'loopback', 'all'] as const, '--health-detail must be loopback, all or off'),
  'enroll-token': nonEmpty,
  'keepalive-interval': duration('keepalive-interval'),
  'keepalive-count-max': count('keepalive-count-max', 1),
  'login-grace-time': duration('login-grace-time'),
  'max-startups': (s: string | undefined): { start: number; rate: number; full: number } => {
    const m = s === undefined ? null : /^(\d+)(?::(\d+):(\d+))?$/.exec(s.trim());
    const start = Number(m?.[1]);
    const rate = m?.[2] === undefined ? 100 : Number(m[2]);
    const full = m?.[3] === undefined ? start : Number(m[3]);
    if (!m || start < 1 || rate > 100 || full < start) {
      return fail('--max-startups must be N or START:RATE:FULL with 1 <= START <= FULL and RATE <= 100, e.g. 100:30:500');
    }
    return { start, rate, full };
  },
  'per-source-max-startups': count('per-source-max-startups', 1),
  'open-timeout': duration('open-timeout'),
  'drain-timeout': duration('drain-timeout'),
  'revocation-poll-interval': duration('revocation-poll-interval'),
  'revocation-wait': (s: string | undefined): number => {
    const ms = duration('revocation-wait')(s);
    return ms <= 25_000 ? ms : fail('--revocation-wait must be at most 25s');
  },
  'jwks-refresh-interval': duration('jwks-refresh-interval'),
  'jwks-min-refresh-interval': duration('jwks-min-refresh-interval'),
  'heartbeat-interval': duration('heartbeat-interval'),
  'events-flush-interval': duration('events-flush-interval'),
  'events-queue-max': count('events-queue-max', 1),
  'max-channels-per-connection': count('max-channels-per-connection', 1),
  'max-channels-per-opener': count('max-channels-per-opener', 1),
  'max-channels-per-member': count('max-channels-per-member', 1),
  'channel-idle-timeout': (s: string | undefined): number | undefined => {
    if (s === 'off') return undefined;
    const ms = s === undefined ? NaN : millis(s);
    return ms >= 1000 ? ms : fail('--channel-idle-timeout must be a duration of at least 1s (e.g. 30m) or off');
  },
  'max-pending-opens': count('max-pending-opens', 1),
  'max-connections-per-lease': count('max-connections-per-lease', 1),
  'max-connections-per-member': count('max-connections-per-member', 1),
  'max-auth-attempts': count('max-auth-attempts', 1),
  'auth-failures-per-minute': count('auth-failures-per-minute', 1),
  'max-rekeys-per-minute': count('max-rekeys-per-minute', 1),
  'max-renewals-per-minute': count('max-renewals-per-minute', 1),
  'max-forwards-per-minute': count('max-forwards-per-minute', 1),
  // ssh2 writes whole packets (up to 32 KiB of channel data) and Node's socket asks for a
  // drain only above 16 KiB, so smaller bounds could never be met.
  'max-send-buffer': size('max-send-buffer', 64 * 1024),
  'send-stall-timeout': duration('send-stall-timeout'),
  'window-budget': size('window-budget', 0),
  'channel-memory': size('channel-memory', 0),
  'max-channel-window': size('max-channel-window', 2 * 1024 * 1024),
  'gc-every': size('gc-every', 0),
  'gc-full-after': size('gc-full-after', 0),
  'gc-full-burst': size('gc-full-burst', 0),
  'test-fault': (s: string | undefined): FaultSpec[] => {
    const specs = (s ?? '').split(',').filter((x) => x !== '');
    const bad = specs.find((x) => !(FAULT_SPECS as readonly string[]).includes(x));
    if (bad !== undefined) fail(`--test-fault ${bad} is not one of ${FAULT_SPECS.join(', ')}`);
    return specs as FaultSpec[];
  },
  'egress-driver': oneOf(EGRESS_DRIVERS, `--egress-driver must be ${EGRESS_DRIVERS.join(' or ')}`),
  'egress-uid': (s: string | undefined): number | undefined => (s === undefined ? undefined : count('egress-uid', 0)(s)),
  'egress-source-ports': (s: string | undefined): PortRange | undefined => {
    if (s === 'off') return undefined;
    const m = s === undefined ? null : /^(\d{1,5})-(\d{1,5})$/.exec(s);
    const first = Number(m?.[1]);
    const last = Number(m?.[2]);
    if (!m || first < 1024 || last > 65535 || first > last) {
      return fail('--egress-source-ports must be FIRST-LAST within 1024-65535 (e.g. 61000-64999) or off');
    }
    return { first, last };
  },
  'egress-ports-per-lease': count('egress-ports-per-lease', 1),
  'egress-connect-timeout': duration('egress-connect-timeout'),
} satisfies Record<OptionName, (s: string | undefined) => unknown>;

type Parsed = { [K in keyof typeof FIELDS]: ReturnType<(typeof FIELDS)[K]> };

/** Every field parsed in FIELDS's order; throws the first one's ConfigError. */
function parseFields(raw: Readonly<Record<string, string | undefined>>): Parsed {
  const out: Record<string, unknown> = {};
  for (const [k, parse] of Object.entries(FIELDS)) out[k] = (parse as (s: string | undefined) => unknown)(raw[k]);
  return out as Parsed;
}

export interface PortRange {
  first: number;
  last: number;
}

export interface EgressConfig {
  driver: EgressDriver;
  /** Undefined: the relay process's own uid (resolved at boot). */
  uid: number | undefined;
  /** Per-lease source-port blocks; undefined when off. */
  sourcePorts: { range: PortRange; perLease: number } | undefined;
  connectTimeoutMs: number;
}

export interface Limits {
  /** Unauthenticated connections (OpenSSH MaxStartups start:rate:full, PerSourceMaxStartups). */
  startups: { start: number; rate: number; full: number; perSource: number };
  channelsPerConnection: number;
  /** One opener's (Y user's) share of an exposing connection's channels. */
  channelsPerOpener: number;
  /** One member's (lease subject's) channels through the relay, all its connections together. */
  channelsPerMember: number;
  /** A bridged channel idle this long is closed; undefined: never. */
  channelIdleMs: number | undefined;
  pendingOpens: number;
  connectionsPerLease: number;
  /** One member's (lease subject's) authenticated connections, all its leases together. */
  connectionsPerMember: number;
  authAttempts: number;
  authFailuresPerMinute: number;
  /** Key exchanges after the first, per connection and minute (a token bucket). */
  rekeysPerMinute: number;
  /** In-band lease renewals per connection and minute (a token bucket). */
  renewalsPerMinute: number;
  /** Port-forwarding global requests per connection and minute (a token bucket). */
  forwardsPerMinute: number;
  /** Bytes queued for one peer before the relay stops feeding it (twice this: stops reading it). */
  sendBufferBytes: number;
  /** A peer over the send bound that takes nothing for this long is disconnected. */
  sendStallMs: number;
  /** What all channels may hold in the relay beyond 64 KiB each (node/channel-memory.ts); one member a quarter of it. */
  channelMemoryBytes: number;
  /** Adaptive windows (node/adaptive-window.ts): all channels' growth together, and one channel's largest window. */
  windowBudgetBytes: number;
  channelWindowMaxBytes: number;
}

export interface ControlTrust {
  caFile: string | undefined;
  /** From --ca-pin; undefined means the pin stored at enrollment (if any) applies. */
  caPin: string | undefined;
  insecureHttp: boolean;
}

export interface Config {
  /** One URL or a comma-separated list of replicas (no trailing slashes). */
  controlUrl: string;
  /** How the control plane's TLS certificate is verified. */
  trust: ControlTrust;
  /** Set when --insecure-http allowed a plain http:// control URL off loopback (print it loudly). */
  insecureWarning: string | undefined;
  dataDir: string;
  listen: HostPort;
  /** `host:port` sent at enrollment. */
  advertise: string;
  metricsListen: HostPort;
  /** Who may read /healthz?detail=1. */
  healthDetail: 'off' | 'loopback' | 'all';
  enrollToken: string | undefined;
  /** Durations in milliseconds. */
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  loginGraceMs: number;
  openTimeoutMs: number;
  drainTimeoutMs: number;
  revocationPollMs: number;
  /** Long-poll wait asked of the control plane (0: plain polling). */
  revocationWaitMs: number;
  jwksRefreshMs: number;
  jwksMinRefreshMs: number;
  heartbeatMs: number;
  /** Bytes read from SSH peers between young-generation collections (node/gc-pacer.ts); 0: off. */
  gcEveryBytes: number;
  /** Growth of the memory held in Buffers that turns a paced collection into a full one (node/gc-pacer.ts); 0: off. */
  gcFullAfterBytes: number;
  /** Bytes held in open bridges that make a burst whose drain is followed by a full collection (node/gc-pacer.ts); 0: off. */
  gcFullBurstBytes: number;
  eventsFlushMs: number;
  eventsQueueMax: number;
  limits: Limits;
  egress: EgressConfig;
  /** Testing only (`--test-fault`): injected handler faults. Empty in production. */
  testFaults: readonly FaultSpec[];
}

export type ParsedCommand = { kind: 'help'; text: string } | { kind: 'run'; config: Readonly<Config> };

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

const isWildcard = (host: string) => host === '0.0.0.0' || host === '::';

/**
 * Parses argv (without node and script) and the environment. Throws ConfigError with a
 * one-line message that says how to fix the problem.
 */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommand {
  const options = Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...options, 'insecure-http': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}; see tunnel-node --help`);
  }
  if (values.help) return { kind: 'help', text: helpText() };

  const raw: Record<string, string | undefined> = {};
  for (const [flag, o] of Object.entries(OPTIONS) as [OptionName, (typeof OPTIONS)[OptionName]][]) {
    const fromFlag = values[flag];
    const fromEnv = env[o.env];
    raw[flag] = typeof fromFlag === 'string' ? fromFlag : fromEnv !== undefined && fromEnv !== '' ? fromEnv : 'def' in o ? o.def : undefined;
  }
  raw['data-dir'] ??= join(xdgBaseDir('XDG_DATA_HOME', env), 'tunnel', 'node');
  const v = parseFields(raw);
  if (v['ca-file'] && v['ca-pin']) throw new ConfigError('give either --ca-file or --ca-pin, not both');
  const insecureHttp = values['insecure-http'] === true || ['1', 'true', 'yes'].includes((env.TUNNEL_INSECURE_HTTP ?? '').toLowerCase());
  let insecureWarning: string | undefined;
  try {
    insecureWarning = v['control-url'].map((u) => checkServerUrl(u, { insecureHttp }).warning).find((w) => w !== undefined);
  } catch (err) {
    if (err instanceof TrustError) throw new ConfigError(`--control-url: ${err.message}`);
    throw err;
  }
  const range = v['egress-source-ports'];
  if (range && range.last - range.first + 1 < v['egress-ports-per-lease']) {
    throw new ConfigError('--egress-source-ports must hold at least one block of --egress-ports-per-lease ports');
  }
  let advertise = v.advertise;
  if (advertise === undefined) {
    if (isWildcard(v.listen.host)) throw new ConfigError('set --advertise host:port (or TUNNEL_ADVERTISE): --listen is a wildcard address');
    advertise = formatHostPort(v.listen);
  } else if (!parseHostPort(advertise, { allowZero: true })) {
    throw new ConfigError('--advertise must be host:port, e.g. relay.example.com:2222');
  }
  return {
    kind: 'run',
    config: Object.freeze({
      controlUrl: v['control-url'].join(','),
      trust: Object.freeze({ caFile: v['ca-file'] ? resolve(v['ca-file']) : undefined, caPin: v['ca-pin'], insecureHttp }),
      insecureWarning,
      dataDir: resolve(v['data-dir']),
      listen: v.listen,
      advertise,
      metricsListen: v['metrics-listen'],
      healthDetail: v['health-detail'],
      enrollToken: v['enroll-token'],
      keepaliveIntervalMs: v['keepalive-interval'],
      keepaliveCountMax: v['keepalive-count-max'],
      loginGraceMs: v['login-grace-time'],
      openTimeoutMs: v['open-timeout'],
      drainTimeoutMs: v['drain-timeout'],
      revocationPollMs: v['revocation-poll-interval'],
      revocationWaitMs: v['revocation-wait'],
      jwksRefreshMs: v['jwks-refresh-interval'],
      jwksMinRefreshMs: v['jwks-min-refresh-interval'],
      heartbeatMs: v['heartbeat-interval'],
      gcEveryBytes: v['gc-every'],
      gcFullAfterBytes: v['gc-full-after'],
      gcFullBurstBytes: v['gc-full-burst'],
      eventsFlushMs: v['events-flush-interval'],
      eventsQueueMax: v['events-queue-max'],
      limits: Object.freeze({
        startups: Object.freeze({ ...v['max-startups'], perSource: v['per-source-max-startups'] }),
        channelsPerConnection: v['max-channels-per-connection'],
        channelsPerOpener: v['max-channels-per-opener'],
        channelsPerMember: v['max-channels-per-member'],
        channelIdleMs: v['channel-idle-timeout'],
        pendingOpens: v['max-pending-opens'],
        connectionsPerLease: v['max-connections-per-lease'],
        connectionsPerMember: v['max-connections-per-member'],
        authAttempts: v['max-auth-attempts'],
        authFailuresPerMinute: v['auth-failures-per-minute'],
        rekeysPerMinute: v['max-rekeys-per-minute'],
        renewalsPerMinute: v['max-renewals-per-minute'],
        forwardsPerMinute: v['max-forwards-per-minute'],
        sendBufferBytes: v['max-send-buffer'],
        sendStallMs: v['send-stall-timeout'],
        channelMemoryBytes: v['channel-memory'],
        windowBudgetBytes: v['window-budget'],
        channelWindowMaxBytes: v['max-channel-window'],
      }),
      egress: Object.freeze({
        driver: v['egress-driver'],
        uid: v['egress-uid'],
        sourcePorts: range ? Object.freeze({ range, perLease: v['egress-ports-per-lease'] }) : undefined,
        connectTimeoutMs: v['egress-connect-timeout'],
      }),
      testFaults: Object.freeze(v['test-fault']),
    }),
  };
}
