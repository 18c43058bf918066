import { EGRESS_DRIVERS } from '../../protocol/lease-claims-check.js';
import { parsePin } from '../../protocol/tls-trust.js';
import { FAULT_SPECS, type FaultSpec } from '../fault-guard.js';
import type { PortRange } from '../config.js';
import type { OptionName } from './flags.js';
import { count, duration, fail, given, hostPort, interval, millis, nonEmpty, oneOf, size } from './values.js';

/**
 * Each option's parser, run in this order on the raw string (undefined when not given and no
 * default): the first one that fails ends the parse with its message.
 */
/** The least --heartbeat-interval, --events-flush-interval and --revocation-poll-interval (values.ts interval). */
const MIN_LOOP_INTERVAL_MS = 100;

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
  'revocation-poll-interval': interval('revocation-poll-interval', MIN_LOOP_INTERVAL_MS),
  'revocation-wait': (s: string | undefined): number => {
    const ms = duration('revocation-wait')(s);
    return ms <= 25_000 ? ms : fail('--revocation-wait must be at most 25s');
  },
  'revocation-max-stale': (s: string | undefined): number | undefined => {
    if (s === 'off') return undefined;
    const ms = s === undefined ? NaN : millis(s);
    return ms >= 1000 ? ms : fail('--revocation-max-stale must be a duration of at least 1s (e.g. 5m) or off');
  },
  'jwks-refresh-interval': duration('jwks-refresh-interval'),
  'jwks-min-refresh-interval': duration('jwks-min-refresh-interval'),
  'heartbeat-interval': interval('heartbeat-interval', MIN_LOOP_INTERVAL_MS),
  'events-flush-interval': interval('events-flush-interval', MIN_LOOP_INTERVAL_MS),
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

export type Parsed = { [K in keyof typeof FIELDS]: ReturnType<(typeof FIELDS)[K]> };

/** Every field parsed in FIELDS's order; throws the first one's ConfigError. */
export function parseFields(raw: Readonly<Record<string, string | undefined>>): Parsed {
  const out: Record<string, unknown> = {};
  for (const [k, parse] of Object.entries(FIELDS)) out[k] = (parse as (s: string | undefined) => unknown)(raw[k]);
  return out as Parsed;
}
