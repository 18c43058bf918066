import { xdgBaseDir } from '../shared/xdg-base-dir.js';
import { parseHostPort } from '../protocol/host-port.js';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseNetwork, type TrustProxy } from './http/client-address.js';
import { LEASE_CLAIM_MAX } from '../protocol/lease-claims-check.js';
import { EVENT_BATCH_MAX_EVENTS } from '../protocol/node-api-check.js';

/**
 * Configuration of `tunnel-control`, read once at start from flags, then `TUNNEL_*` environment
 * (and `DATABASE_URL`), then defaults. The only place that reads process.env for the control plane.
 */
export interface ControlConfig {
  command: 'serve' | 'rotate-keys' | 'create-user' | 'gen-master-key' | 'help';
  listenHost: string;
  listenPort: number;
  publicUrl: string;
  dataDir: string;
  databaseUrl: string | undefined;
  masterKey: Buffer | undefined;
  masterKeyFile: string | undefined;
  maxLeaseTtl: number;
  /** Leases one user may be issued per minute. */
  leaseRateLimit: number;
  /** Days audit events are kept; 0: for good. */
  auditRetentionDays: number;
  /** Event batches one relay may send per minute, and events in them (services/relay-event-limit.ts). */
  relayEventBatchLimit: number;
  relayEventLimit: number;
  /** Proxies trusted to name the client in X-Forwarded-For: hops, or networks; 0 = none. */
  trustProxy: TrustProxy;
  /** Seconds a console session may go without renewing a token before it is ended; 0: never. */
  consoleIdleTimeout: number;
  /** How the API is served: plain HTTP, HTTPS from files, or HTTPS with a self-made certificate. */
  tls: TlsConfig;
  /** Where to serve /metrics (plain HTTP, apart from the API); undefined: not served at all. */
  metricsListen: { host: string; port: number } | undefined;
  /** gen-master-key */
  masterKeyOut?: string;
  /** create-user */
  userName?: string;
  userRole?: 'admin' | 'member';
  userPassword?: string;
}

export type TlsConfig =
  | { mode: 'off'; warn: boolean }
  | { mode: 'files'; certFile: string; keyFile: string }
  | { mode: 'self-signed'; dir: string };

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

export const CONTROL_USAGE = `Usage: tunnel-control [serve] [options]
       tunnel-control rotate-keys [options]            publish new signing and CA keys (old ones keep verifying)
       tunnel-control create-user NAME [--admin]       create a user; password from TUNNEL_PASSWORD or --password-stdin
       tunnel-control gen-master-key FILE              write a new master key to FILE (mode 0600; never overwrites)

Runs the Tunnel control plane: accounts, exposures, relay nodes, leases and OpenSSH certificates.

Options (environment variable in brackets):
  --listen HOST:PORT     where to serve the API [TUNNEL_LISTEN] (default 127.0.0.1:8080)
  --public-url URL       URL clients and relays use to reach this API; also the token issuer
                         [TUNNEL_PUBLIC_URL] (default http(s)://<listen>; at most 2048 characters)
  --tls-cert FILE        serve HTTPS with this certificate chain (PEM) [TUNNEL_TLS_CERT]
  --tls-key FILE         ... and this private key (PEM) [TUNNEL_TLS_KEY]; both are read again on
                         SIGHUP and when the certificate file changes, without a restart
  --tls MODE             auto, self-signed or off [TUNNEL_TLS] (default auto: the files above when
                         given; else plain HTTP on a loopback --listen (behind a reverse proxy);
                         else, with the embedded database, self-signed). self-signed makes a key and
                         certificate in DATA_DIR/tls at first start and prints the pin that relays
                         and the CLI take with --ca-pin. off on a non-loopback address warns loudly.
  --data-dir DIR         embedded database, master key, self-signed certificate [TUNNEL_DATA_DIR]
                         (default $XDG_DATA_HOME/tunnel/control, i.e. ~/.local/share/tunnel/control)
  --database-url URL     use this Postgres instead of the embedded database [DATABASE_URL]
  --master-key-file F    32-byte key (base64 or hex) that encrypts private keys at rest
                         [TUNNEL_MASTER_KEY_FILE, or the key itself in TUNNEL_MASTER_KEY]
  --max-lease-ttl SECS   cap on any lease's life [TUNNEL_MAX_LEASE_TTL] (default 86400)
  --lease-rate-limit N   leases one user may be issued per minute, all their tokens together
                         [TUNNEL_LEASE_RATE_LIMIT] (default 120)
  --audit-retention DAYS audit events older than this are deleted [TUNNEL_AUDIT_RETENTION_DAYS]
                         (default 365; 0 keeps them for good)
  --relay-event-batch-limit N
                         event batches one relay may send a minute; past it 429 with Retry-After
                         [TUNNEL_RELAY_EVENT_BATCH_LIMIT] (default 600)
  --relay-event-limit N  events one relay may send a minute, at least ${EVENT_BATCH_MAX_EVENTS} (one full batch)
                         [TUNNEL_RELAY_EVENT_LIMIT] (default 60000)
  --trust-proxy TRUST    behind reverse proxies: who may name the client in X-Forwarded-For
                         [TUNNEL_TRUST_PROXY]. A number of hops (1: one load balancer, whose
                         view of the client is the last entry) or a comma-separated list of
                         proxy addresses/networks (10.0.0.0/8,127.0.0.1), walked right to left.
                         Default: none (the socket's peer is the client).
  --console-idle-timeout DURATION
                         end a web console session that made no request for this long (its
                         refresh token is refused and the session revoked, audited as
                         auth.session_idle) [TUNNEL_CONSOLE_IDLE_TIMEOUT] (default 12h; from 10m
                         to 30d, e.g. 45m, 8h, 2d; off: only the 30-day token life ends it)
  --metrics-listen HOST:PORT
                         serve Prometheus /metrics on this address, plain HTTP and apart from the
                         API [TUNNEL_METRICS_LISTEN] (default: not served; keep it on loopback or
                         a private network: it counts requests, logins refused and leases issued)
  -h, --help             show this help

Examples:
  tunnel-control --listen 0.0.0.0:8443 --public-url https://tunnel.example.com:8443 \\
    --tls-cert /etc/tunnel/tls/fullchain.pem --tls-key /etc/tunnel/tls/privkey.pem
  tunnel-control --listen 127.0.0.1:8080 --public-url https://tunnel.example.com   # behind a TLS proxy
  tunnel-control gen-master-key /etc/tunnel/master.key
`;


function parseMasterKey(text: string, source: string): Buffer {
  const t = text.trim();
  const buf = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (buf.length !== 32) {
    throw new ConfigError(`${source} must hold 32 bytes as base64 or hex; make one with: openssl rand -base64 32`);
  }
  return buf;
}

export function loadControlConfig(argv: string[], env: NodeJS.ProcessEnv, readStdin?: () => string): Readonly<ControlConfig> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        listen: { type: 'string' },
        'public-url': { type: 'string' },
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        'master-key-file': { type: 'string' },
        'max-lease-ttl': { type: 'string' },
        'lease-rate-limit': { type: 'string' },
        'audit-retention': { type: 'string' },
        'relay-event-batch-limit': { type: 'string' },
        'relay-event-limit': { type: 'string' },
        'console-idle-timeout': { type: 'string' },
        'trust-proxy': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        tls: { type: 'string' },
        'metrics-listen': { type: 'string' },
        admin: { type: 'boolean' },
        'password-stdin': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}; see tunnel-control --help`);
  }
  const { values: v, positionals } = parsed;
  const cmd = positionals[0] ?? 'serve';
  if (v.help || cmd === 'help') return Object.freeze({ ...defaults(env), command: 'help' as const });
  if (!['serve', 'rotate-keys', 'create-user', 'gen-master-key'].includes(cmd)) {
    throw new ConfigError(`unknown command "${cmd}"; see tunnel-control --help`);
  }
  if (cmd === 'gen-master-key') {
    const out = positionals[1];
    if (!out || positionals.length > 2) throw new ConfigError('gen-master-key needs one FILE to write the key to, e.g. /etc/tunnel/master.key');
    return Object.freeze({ ...defaults(env), command: 'gen-master-key' as const, masterKeyOut: out });
  }

  const listenText = v.listen ?? env.TUNNEL_LISTEN ?? '127.0.0.1:8080';
  const listen = parseHostPort(listenText, { allowZero: true });
  if (!listen) throw new ConfigError(`--listen must be HOST:PORT with a port up to 65535, for example 127.0.0.1:8080 (got "${listenText}")`);
  const { host: listenHost, port: listenPort } = listen;

  if (listenPort === 0 && !(v['public-url'] ?? env.TUNNEL_PUBLIC_URL)) {
    throw new ConfigError('--listen with port 0 needs --public-url (the URL is also the token issuer, so it must be known at start)');
  }
  const databaseUrl = v['database-url'] ?? env.DATABASE_URL ?? undefined;
  const dataDir = resolve(v['data-dir'] ?? env.TUNNEL_DATA_DIR ?? defaults(env).dataDir);
  const tls = tlsConfig(v, env, listenHost, databaseUrl, dataDir);
  const scheme = tls.mode === 'off' ? 'http' : 'https';
  const publicUrlRaw = v['public-url'] ?? env.TUNNEL_PUBLIC_URL ?? `${scheme}://${listenHost === '0.0.0.0' ? '127.0.0.1' : listenText.replace(/:\d+$/, '')}:${listenPort}`;
  let publicUrl: string;
  try {
    const u = new URL(publicUrlRaw);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    if (u.search || u.hash) throw new Error('query');
    publicUrl = u.toString().replace(/\/$/, '');
  } catch {
    throw new ConfigError(`--public-url "${publicUrlRaw}" must be an http(s) URL without query, e.g. https://tunnel.example.com`);
  }
  // It is every lease's `iss`: a longer one than the claims allow would make every lease fail, and
  // protocol/lease-size.ts counts it as at most that long, written as is in JSON.
  if (publicUrl.length > LEASE_CLAIM_MAX.iss || !/^[!#-[\]-~]+$/.test(publicUrl)) {
    throw new ConfigError(`--public-url must be at most ${LEASE_CLAIM_MAX.iss} characters of printable ASCII without " or \\ (it is the issuer of every token)`);
  }
  if (tls.mode !== 'off' && publicUrl.startsWith('http:')) {
    throw new ConfigError(`--public-url ${publicUrl} is http:// but this server speaks HTTPS; use https:// (or --tls off)`);
  }

  const ttlRaw = v['max-lease-ttl'] ?? env.TUNNEL_MAX_LEASE_TTL ?? '86400';
  const maxLeaseTtl = Number(ttlRaw);
  if (!Number.isInteger(maxLeaseTtl) || maxLeaseTtl < 60 || maxLeaseTtl > 31 * 86400) {
    throw new ConfigError(`--max-lease-ttl must be whole seconds between 60 and ${31 * 86400}`);
  }

  const leaseRateRaw = v['lease-rate-limit'] ?? env.TUNNEL_LEASE_RATE_LIMIT ?? '120';
  const leaseRateLimit = Number(leaseRateRaw);
  if (!/^\d+$/.test(leaseRateRaw) || leaseRateLimit < 1 || leaseRateLimit > 1_000_000_000) {
    throw new ConfigError('--lease-rate-limit must be a whole number of leases per minute, at least 1');
  }

  const auditRaw = v['audit-retention'] ?? env.TUNNEL_AUDIT_RETENTION_DAYS ?? '365';
  const auditRetentionDays = Number(auditRaw);
  if (!/^\d{1,6}$/.test(auditRaw) || auditRetentionDays > 36_500) {
    throw new ConfigError(`--audit-retention must be whole days from 1 to 36500, or 0 to keep audit events for good (got "${auditRaw}")`);
  }

  // A relay sends up to EVENT_BATCH_MAX_EVENTS events a batch and keeps a refused batch to send
  // again: a lower event bound would refuse a full batch every minute, for good.
  const relayEventBatchLimit = wholeNumber('--relay-event-batch-limit', v['relay-event-batch-limit'] ?? env.TUNNEL_RELAY_EVENT_BATCH_LIMIT ?? '600', 1, 'batches a minute');
  const relayEventLimit = wholeNumber('--relay-event-limit', v['relay-event-limit'] ?? env.TUNNEL_RELAY_EVENT_LIMIT ?? '60000', EVENT_BATCH_MAX_EVENTS, `events a minute (a full batch is ${EVENT_BATCH_MAX_EVENTS})`);

  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must start with postgres:// (unset it to use the embedded database)');
  }
  const masterKeyFile = v['master-key-file'] ?? env.TUNNEL_MASTER_KEY_FILE ?? undefined;
  const masterKey = env.TUNNEL_MASTER_KEY ? parseMasterKey(env.TUNNEL_MASTER_KEY, 'TUNNEL_MASTER_KEY') : undefined;
  if (databaseUrl && !masterKey && !masterKeyFile) {
    throw new ConfigError(
      'with DATABASE_URL every replica needs the same master key: set TUNNEL_MASTER_KEY or TUNNEL_MASTER_KEY_FILE (openssl rand -base64 32)',
    );
  }

  const consoleIdleTimeout = idleTimeout(v['console-idle-timeout'] ?? (env.TUNNEL_CONSOLE_IDLE_TIMEOUT || '12h'));

  const metricsText = v['metrics-listen'] ?? (env.TUNNEL_METRICS_LISTEN || undefined);
  const metricsListen = metricsText === undefined ? undefined : parseHostPort(metricsText, { allowZero: true });
  if (metricsText !== undefined && !metricsListen) {
    throw new ConfigError(`--metrics-listen must be HOST:PORT with a port up to 65535, for example 127.0.0.1:9091 (got "${metricsText}")`);
  }

  const cfg: ControlConfig = {
    ...defaults(env),
    command: cmd as ControlConfig['command'],
    listenHost,
    listenPort,
    publicUrl,
    dataDir,
    databaseUrl,
    masterKey,
    masterKeyFile,
    maxLeaseTtl,
    leaseRateLimit,
    auditRetentionDays,
    relayEventBatchLimit,
    relayEventLimit,
    trustProxy: parseTrustProxy(v['trust-proxy'] ?? env.TUNNEL_TRUST_PROXY ?? ''),
    consoleIdleTimeout,
    tls,
    metricsListen,
  };
  if (cmd === 'create-user') {
    const name = positionals[1];
    if (!name || !/^[a-z][a-z0-9._-]{0,63}$/.test(name)) {
      throw new ConfigError('create-user needs a NAME matching [a-z][a-z0-9._-]{0,63}');
    }
    const password = v['password-stdin'] && readStdin ? readStdin().replace(/\r?\n$/, '') : env.TUNNEL_PASSWORD;
    if (!password || password.length < 12) {
      throw new ConfigError('create-user needs a password of at least 12 characters in TUNNEL_PASSWORD or on stdin with --password-stdin');
    }
    Object.assign(cfg, { userName: name, userRole: v.admin ? 'admin' : 'member', userPassword: password });
  }
  return Object.freeze(cfg);
}

/** A whole number from `min` to 1,000,000,000 (a bound per minute), or a ConfigError naming `flag`. */
function wholeNumber(flag: string, raw: string, min: number, what: string): number {
  const n = Number(raw);
  if (!/^\d{1,10}$/.test(raw) || n < min || n > 1_000_000_000) {
    throw new ConfigError(`${flag} must be a whole number of ${what}, from ${min} to 1000000000 (got "${raw.slice(0, 32)}")`);
  }
  return n;
}

const IDLE_UNITS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/**
 * `--console-idle-timeout`: seconds, from 10 minutes (an access token's life, which outlives the
 * last refresh by as much) to 30 days (a session's whole life), or 0 for `off`.
 */
function idleTimeout(raw: string): number {
  if (raw === 'off') return 0;
  const m = /^(\d{1,7})([smhd])?$/.exec(raw);
  const secs = m ? Number(m[1]) * IDLE_UNITS[(m[2] ?? 's') as keyof typeof IDLE_UNITS] : NaN;
  if (!(secs >= 600 && secs <= 30 * 86400)) {
    throw new ConfigError(`--console-idle-timeout must be a duration from 10m to 30d, such as 45m, 12h or 2d, or off (got "${raw.slice(0, 32)}")`);
  }
  return secs;
}

/** localhost, 127.0.0.0/8, ::1. */
export function isLoopbackListen(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function tlsConfig(
  v: { 'tls-cert'?: string | undefined; 'tls-key'?: string | undefined; tls?: string | undefined },
  env: NodeJS.ProcessEnv,
  listenHost: string,
  databaseUrl: string | undefined,
  dataDir: string,
): TlsConfig {
  const certFile = v['tls-cert'] ?? (env.TUNNEL_TLS_CERT || undefined);
  const keyFile = v['tls-key'] ?? (env.TUNNEL_TLS_KEY || undefined);
  const mode = v.tls ?? (env.TUNNEL_TLS || 'auto');
  if (!['auto', 'self-signed', 'off'].includes(mode)) throw new ConfigError('--tls must be auto, self-signed or off');
  if ((certFile === undefined) !== (keyFile === undefined)) throw new ConfigError('--tls-cert and --tls-key go together');
  if (certFile && keyFile) {
    if (mode !== 'auto') throw new ConfigError(`--tls ${mode} and --tls-cert/--tls-key exclude each other`);
    return { mode: 'files', certFile: resolve(certFile), keyFile: resolve(keyFile) };
  }
  const loopback = isLoopbackListen(listenHost);
  if (mode === 'off') return { mode: 'off', warn: !loopback };
  const selfSigned = (): TlsConfig => {
    if (databaseUrl) {
      throw new ConfigError(
        'a self-signed certificate is for the embedded single-host default; with DATABASE_URL give every replica the same --tls-cert/--tls-key',
      );
    }
    return { mode: 'self-signed', dir: join(dataDir, 'tls') };
  };
  if (mode === 'self-signed') return selfSigned();
  if (loopback) return { mode: 'off', warn: false };
  if (!databaseUrl) return selfSigned();
  throw new ConfigError(
    `--listen ${listenHost} is not loopback and no TLS is configured: give --tls-cert/--tls-key, or --tls off only behind a TLS-terminating proxy on a private network`,
  );
}

function defaults(env: NodeJS.ProcessEnv): ControlConfig {
  const dataHome = xdgBaseDir('XDG_DATA_HOME', env);
  return {
    command: 'serve',
    listenHost: '127.0.0.1',
    listenPort: 8080,
    publicUrl: 'http://127.0.0.1:8080',
    dataDir: join(dataHome, 'tunnel', 'control'),
    databaseUrl: undefined,
    masterKey: undefined,
    masterKeyFile: undefined,
    maxLeaseTtl: 86400,
    leaseRateLimit: 120,
    auditRetentionDays: 365,
    relayEventBatchLimit: 600,
    relayEventLimit: 60_000,
    trustProxy: 0,
    consoleIdleTimeout: 12 * 3600,
    tls: { mode: 'off', warn: false },
    metricsListen: undefined,
  };
}

/** `--trust-proxy`: empty/0/false = none, true/yes = 1 hop, N = N hops, or a list of networks. */
export function parseTrustProxy(raw: string): TrustProxy {
  const t = raw.trim().toLowerCase();
  if (t === '' || t === '0' || t === 'false' || t === 'no') return 0;
  if (t === 'true' || t === 'yes') return 1;
  if (/^\d+$/.test(t)) {
    const hops = Number(t);
    if (hops > 16) throw new ConfigError('--trust-proxy hops must be at most 16');
    return hops;
  }
  const networks = t.split(',').map((n) => n.trim()).filter(Boolean);
  for (const n of networks) {
    try {
      parseNetwork(n);
    } catch (err) {
      throw new ConfigError(`--trust-proxy ${(err as Error).message}; give a number of hops or networks like 10.0.0.0/8,127.0.0.1`);
    }
  }
  return Object.freeze(networks);
}
