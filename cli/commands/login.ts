import { FileKindRefusedError, FileTooLargeError, readFileBounded } from '../../shared/read-file-bounded.js';
import { resolve } from 'node:path';
import { hostname } from 'node:os';
import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DeviceAuthorizationResponseSchema,
  GRANT_DEVICE_CODE,
  GRANT_SERVICE_TOKEN,
  MeSchema,
  TokenResponseSchema,
  type TokenResponse,
} from '../../protocol/api-types.js';
import { ApiClient, ApiError, stopped } from '../api-client.js';
import { parseCommand } from '../args.js';
import { info, out, type Context } from '../context.js';
import { CliError, EXIT, STOPPED, UsageError } from '../errors.js';
import { readLine } from '../prompt.js';
import { resolveServer, resolveTrust, storeTrust, writeCredentials } from '../settings.js';
import type { Command } from './command.js';

export const login: Command = {
  name: 'login',
  summary: 'log in to a control plane (device flow, password or service token)',
  usage: `Usage: tunnel login [--server URL] [--browser]
       tunnel login [--server URL] --password [--user NAME]
       tunnel login [--server URL] --token TOKEN   (or --token-file FILE)
       (any of them with --ca-pin sha256:HEX or --ca-file FILE, once)

Logs in and stores the credentials in $XDG_CONFIG_HOME/tunnel/credentials.json (mode 0600).
Without options it starts a device login: it prints a URL and a code; open the URL on any
machine, sign in and approve the code. --password asks for a password (or reads it from
standard input). --token uses a service token for headless hosts (TUNNEL_TOKEN works too).

Options:
  --server URL     the control plane (or TUNNEL_SERVER, or the last one used); several replicas
                   as one comma-separated list, tried in order when one cannot be reached
  --browser        open the approval page in a browser (xdg-open)
  --password       log in with user name and password
  --user NAME      user name for --password (asked for when missing)
  --token TOKEN    a service token (scoped, for headless hosts)
  --token-file F   read the service token from file F, at most 64 KiB (keeps it out of the
                   process list; a pipe or FIFO works too)
  --ca-pin PIN     trust the server whose certificate key has this pin (sha256:HEX, printed by
                   tunnel-control at start) instead of the system CAs [TUNNEL_CA_PIN]
  --ca-file FILE   trust the CA certificates in FILE (PEM) instead of the system CAs [TUNNEL_CA_FILE]
                   (a regular file, not a pipe: later commands read it again)
  --insecure-http  allow a plain http:// server that is not on loopback (everything, passwords
                   included, crosses the network unencrypted) [TUNNEL_INSECURE_HTTP=1]
The pin, CA file or --insecure-http is stored with the server in config.json, so later commands
verify the server the same way without being told again.

Examples:
  tunnel login --server https://tunnel.example.com
  tunnel login --server https://203.0.113.7:8443 --ca-pin sha256:3f1c...e9
  tunnel login --server https://ctl-a.example:8443,https://ctl-b.example:8443
  TUNNEL_TOKEN=tnl_st_... tunnel login --server https://tunnel.example.com`,
  async run(ctx, argv) {
    const a = parseCommand('login', argv, {
      browser: { type: 'boolean' },
      password: { type: 'boolean' },
      user: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'ca-pin': { type: 'string' },
      'ca-file': { type: 'string' },
      'insecure-http': { type: 'boolean' },
    });
    if (a.positionals.length) throw new UsageError('login', `unexpected argument "${a.positionals[0]}"`);
    // An empty --token (a variable that was not set, expanded by the shell) is a mistake, not a
    // request for the browser login that logging in without one starts.
    if (a.values.token !== undefined && a.values.token.trim() === '') throw new UsageError('login', '--token is empty (to read it from the environment, set TUNNEL_TOKEN and leave --token out)');
    const ways = (['password', 'token', 'token-file'] as const).filter((k) => a.values[k] !== undefined);
    if (ways.length > 1) throw new UsageError('login', `${ways.map((k) => `--${k}`).join(' and ')} are ${ways.length === 2 ? 'two' : 'three'} ways to log in; give one`);
    const server = resolveServer(ctx, a.server);
    if (!server) throw new UsageError('login', 'no control plane given: use --server URL (or TUNNEL_SERVER)');
    const caFile = a.values['ca-file'];
    const flags = { caPin: a.values['ca-pin'], caFile: caFile === undefined ? undefined : resolve(caFile), insecureHttp: a.values['insecure-http'] === true };
    const api = ApiClient.forServer(ctx, server, flags);
    const trust = resolveTrust(ctx, server, flags);
    const fromFile = a.values['token-file'] === undefined ? undefined : await readTokenFile(a.values['token-file'], ctx.stopSignal);
    const fromEnv = a.values.password ? undefined : ctx.env.TUNNEL_TOKEN;
    // Set but blank (a CI secret that is missing, `TUNNEL_TOKEN=$UNSET`): the same mistake as an
    // empty --token, which on a headless host started a browser login that waited in silence.
    if (a.values.token === undefined && fromFile === undefined && fromEnv !== undefined && fromEnv.trim() === '') {
      throw new UsageError('login', 'TUNNEL_TOKEN is set but empty (unset it for a browser login)');
    }
    const serviceToken = a.values.token ?? fromFile ?? fromEnv;

    // Ctrl-C cancels the request in flight and the wait between device-flow polls alike.
    const signal = ctx.stopSignal;
    let tokens: TokenResponse;
    if (serviceToken) {
      tokens = await api.call('POST', '/v1/auth/token', TokenResponseSchema, {
        body: { grant_type: GRANT_SERVICE_TOKEN, service_token: serviceToken },
        signal,
      });
    } else if (a.values.password) {
      const username = a.values.user ?? (await readLine(ctx, 'User: ', false)).trim();
      const password = await readLine(ctx, 'Password: ', true);
      if (!username || !password) throw new UsageError('login', 'user name and password are required');
      tokens = await api.call('POST', '/v1/auth/token', TokenResponseSchema, {
        body: { grant_type: 'password', username, password },
        signal,
      });
    } else {
      tokens = await deviceLogin(ctx, api, a.values.browser === true);
    }

    const me = await api.call('GET', '/v1/me', MeSchema, { token: tokens.access_token, signal });
    writeCredentials(ctx, {
      server,
      user: me.name,
      access_token: tokens.access_token,
      access_expires_at: Date.now() + tokens.expires_in * 1000,
      ...(tokens.refresh_token ? { refresh_token: tokens.refresh_token } : {}),
      ...(serviceToken ? { service_token: serviceToken } : {}),
    });
    storeTrust(ctx, server, trust);
    if (a.json) out(ctx, JSON.stringify({ server, user: me.name, role: me.role }, null, 2));
    else info(ctx, `Logged in to ${server} as ${me.name}${me.scopes ? ` (service token: ${me.scopes.join(' ')})` : ''}.`);
    return 0;
  },
};

async function deviceLogin(ctx: Context, api: ApiClient, browser: boolean): Promise<TokenResponse> {
  const start = await api.call('POST', '/v1/auth/device', DeviceAuthorizationResponseSchema, {
    body: { client_name: `tunnel CLI on ${hostname()}`.slice(0, 64) },
    signal: ctx.stopSignal,
  });
  info(ctx, `To log in, open ${start.verification_uri} and enter the code ${start.user_code}`);
  info(ctx, `  (or open ${start.verification_uri_complete})`);
  if (browser) openBrowser(ctx, start.verification_uri_complete);
  // The control plane's numbers, bounded: an interval past a timer's longest wait (2^31 ms) would
  // fire at once, a poll in a tight loop; an expiry far off would have the login wait for ever.
  let interval = bounded(start.interval, 1, MAX_POLL_INTERVAL_S);
  const deadline = Date.now() + bounded(start.expires_in, 0, MAX_DEVICE_CODE_LIFE_S) * 1000;
  info(ctx, 'Waiting for approval...');
  for (;;) {
    // RFC 8628 §3.5: wait the interval between polls; add 5 s on slow_down (until the code expires).
    await delay(interval * 1000, undefined, { signal: ctx.stopSignal }).catch((cause: unknown) => {
      throw stopped(api.activeUrl, cause);
    });
    try {
      return await api.call('POST', '/v1/auth/token', TokenResponseSchema, {
        body: { grant_type: GRANT_DEVICE_CODE, device_code: start.device_code },
        signal: ctx.stopSignal,
      });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.code === 'AUTHORIZATION_PENDING' && Date.now() < deadline) continue;
      if (err.code === 'SLOW_DOWN' && Date.now() < deadline) {
        interval = Math.min(MAX_POLL_INTERVAL_S, interval + 5);
        continue;
      }
      if (err.code === 'ACCESS_DENIED') throw new CliError(EXIT.NOT_PERMITTED, 'the login was denied on the approval page');
      if (err.code === 'EXPIRED_TOKEN' || err.code === 'AUTHORIZATION_PENDING' || err.code === 'SLOW_DOWN') {
        throw new CliError(EXIT.NOT_LOGGED_IN, 'the login code expired before it was approved; run tunnel login again');
      }
      throw err;
    }
  }
}

/** The longest --token-file read: a service token is under 100 bytes. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

/**
 * The service token in `path`, read through readFileBounded: a file that never ends (/dev/zero)
 * is refused past 64 KiB, a pipe that stays open leaves a stop handled (exit 130), and a terminal
 * is refused (exit 2): its read could not be stopped, and a typed token would be echoed.
 */
async function readTokenFile(path: string, signal: AbortSignal): Promise<string> {
  let t: string;
  try {
    t = (await readFileBounded(path, MAX_TOKEN_FILE_BYTES, signal)).toString('utf8').trim();
  } catch (err) {
    if (signal.aborted) throw new CliError(EXIT.STOPPED, `stopped while reading ${path}`, { code: STOPPED, cause: err });
    const why =
      err instanceof FileTooLargeError
        ? 'longer than 64 KiB'
        : err instanceof FileKindRefusedError
          ? `${err.kindText}: give a file, or a pipe such as --token-file <(pass show NAME)`
          : ((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    throw new CliError(EXIT.USAGE, `cannot read a service token from ${path} (${why})`);
  }
  if (!t) throw new CliError(EXIT.USAGE, `cannot read a service token from ${path} (empty)`);
  return t;
}

/** The longest wait between device-flow polls, whatever the control plane says (RFC 8628's default is 5 s). */
const MAX_POLL_INTERVAL_S = 300;
/** The longest a device login waits for approval, whatever the control plane says (its default is 10 minutes). */
const MAX_DEVICE_CODE_LIFE_S = 3600;

const bounded = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));

/**
 * Opens the approval page with xdg-open: only an http(s) URL, as parsed (one the control plane sent
 * that names another scheme, a file or a handler, or reads as an option, is only printed).
 */
function openBrowser(ctx: Context, url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed?.protocol !== 'https:' && parsed?.protocol !== 'http:') {
    info(ctx, 'tunnel login: not opening the approval page in a browser: the control plane sent a URL that is not http(s); open the one above by hand');
    return;
  }
  // The URL as parsed (what was checked), not as sent: the parser drops tabs, line breaks and
  // surrounding spaces that the string handed to xdg-open would keep.
  const child = spawn('xdg-open', [parsed.href], { stdio: 'ignore', detached: true });
  child.on('error', () => {});
  child.unref();
}
