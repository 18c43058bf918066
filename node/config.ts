import { xdgBaseDir } from '../shared/xdg-base-dir.js';
import { formatHostPort, parseHostPort, type HostPort } from '../protocol/host-port.js';
import type { EgressDriver } from '../protocol/lease-claims-check.js';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { FaultSpec } from './fault-guard.js';
import { checkServerUrl, TrustError } from '../protocol/tls-trust.js';
import { ConfigError } from './config/config-error.js';
import { helpText, OPTIONS, type OptionName } from './config/flags.js';
import { parseFields } from './config/fields.js';

/**
 * The relay's configuration, parsed once at boot from flags and `TUNNEL_*` environment
 * variables (flag wins). Everything else receives the frozen `Config`.
 *
 * The flags, their variables, defaults and help live in node/config/flags.ts; what each value
 * may be in node/config/fields.ts (with the value kinds of node/config/values.ts). This file
 * holds the `Config` type and parseConfig, which checks what spans several flags and builds it.
 */

export { ConfigError } from './config/config-error.js';
export { helpText } from './config/flags.js';

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
  /** How long without an answered revocation poll before the relay fails closed (undefined: never). */
  revocationMaxStaleMs: number | undefined;
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
  const maxStale = v['revocation-max-stale'];
  if (maxStale !== undefined && maxStale < 2 * v['revocation-wait']) {
    throw new ConfigError('--revocation-max-stale must be at least twice --revocation-wait (a held poll is answered only when it ends)');
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
      revocationMaxStaleMs: v['revocation-max-stale'],
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
