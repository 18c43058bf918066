import { existsSync, rmSync } from 'node:fs';
import { FileKindRefusedError, FileTooLargeError, readFileBoundedSyncWithMode } from '../shared/read-file-bounded.js';
import { join } from 'node:path';
import { xdgBaseDir } from '../shared/xdg-base-dir.js';
import { z } from 'zod';
import type { Context } from './context.js';
import { CliError, EXIT } from './errors.js';
import type { TrustError} from '../protocol/tls-trust.js';
import { parsePin, type TrustSettings } from '../protocol/tls-trust.js';
import { writeFileAtomicSync } from '../shared/write-file-atomic.js';
import { terminalText } from './terminal-text.js';

/**
 * Where the CLI keeps its state: `$XDG_CONFIG_HOME/tunnel/` (default `~/.config/tunnel/`):
 * `config.json` (server URL) and `credentials.json` (tokens, mode 0600). A relative
 * XDG_CONFIG_HOME is ignored, as the XDG Base Directory spec says (it would name another
 * directory in every working directory).
 */
export function configDir(ctx: Pick<Context, 'env' | 'homeDir'>): string {
  return join(xdgBaseDir('XDG_CONFIG_HOME', ctx.env, ctx.homeDir), 'tunnel');
}

/** How to trust one server's TLS (stored at login, so the pin is given once). */
const ServerTrustSchema = z.object({
  ca_pin: z.string().optional(),
  ca_file: z.string().optional(),
  insecure_http: z.boolean().optional(),
});
export type ServerTrust = z.infer<typeof ServerTrustSchema>;

const ConfigFileSchema = z
  .object({ server: z.string().optional(), servers: z.record(z.string(), ServerTrustSchema).optional() })
  .passthrough();

export const CredentialsSchema = z.object({
  server: z.string(),
  user: z.string().optional(),
  access_token: z.string(),
  /** ms since epoch */
  access_expires_at: z.number(),
  refresh_token: z.string().optional(),
  /** Headless hosts: the service token, exchanged again whenever the access token runs out. */
  service_token: z.string().optional(),
});
export type Credentials = z.infer<typeof CredentialsSchema>;

/** The longest config.json or credentials.json read (each is a few hundred bytes). */
const MAX_FILE_BYTES = 1024 * 1024;

/**
 * A JSON file of the CLI's (`json`) and the mode of the file it was read from, or undefined when
 * there is none. Read bounded and without waiting (shared/read-file-bounded.ts): a FIFO, socket or
 * terminal there is refused, a device that never ends (/dev/zero behind a symlink) stops at the
 * bound. What does not parse is not quoted: JSON.parse's message quotes the file's first
 * characters, which may be a token.
 */
function readJson(path: string): { json: unknown; mode: number } | undefined {
  let text: string;
  let mode: number;
  try {
    const read = readFileBoundedSyncWithMode(path, MAX_FILE_BYTES);
    text = read.bytes.toString('utf8');
    mode = read.mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const why =
      err instanceof FileTooLargeError
        ? `larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`
        : err instanceof FileKindRefusedError
          ? err.kindText
          : ((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    throw new CliError(EXIT.ERROR, `cannot read ${path}: ${why}; fix or delete it`);
  }
  try {
    return { json: JSON.parse(text), mode };
  } catch {
    throw new CliError(EXIT.ERROR, `cannot read ${path}: not valid JSON; fix or delete it`);
  }
}

/** Writes atomically (shared/write-file-atomic.ts) with the given mode; a failure is one line. */
function writeJson(path: string, value: unknown, mode: number): void {
  try {
    writeFileAtomicSync(path, JSON.stringify(value, null, 2) + '\n', mode);
  } catch (err) {
    throw new CliError(EXIT.ERROR, `cannot write ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

export function readConfigFile(ctx: Pick<Context, 'env' | 'homeDir'>): z.infer<typeof ConfigFileSchema> {
  const path = join(configDir(ctx), 'config.json');
  const raw = readJson(path);
  if (raw === undefined) return {};
  const parsed = ConfigFileSchema.safeParse(raw.json);
  if (!parsed.success) throw new CliError(EXIT.ERROR, `${path} is not a valid config file; fix or delete it`);
  return parsed.data;
}

export function writeConfigFile(ctx: Pick<Context, 'env' | 'homeDir'>, cfg: z.infer<typeof ConfigFileSchema>): void {
  writeJson(join(configDir(ctx), 'config.json'), cfg, 0o600);
}

/** Credentials files already warned about in this process: a running `tunnel expose` reads its file again at each renewal. */
const warnedOpen = new Set<string>();

/**
 * One line on stderr when the credentials file can be read or written by anyone but its owner
 * (mode bits for group or others, as after a copy or an archive's extraction): its refresh or
 * service token logs in as this user. `fileMode` is the mode of the file the tokens were read
 * from (readJson), not a second stat of the path, which may name another file by then. Not
 * refused, unlike ssh's private keys: the next write (a renewal, a login) puts it back to 0600
 * (writeCredentials). Once per file per process.
 */
function warnIfOpen(path: string, fileMode: number, stderr: Context['stderr'] | undefined): void {
  if (!stderr || process.platform === 'win32' || warnedOpen.has(path)) return;
  const mode = fileMode & 0o777;
  if ((mode & 0o077) === 0) return;
  warnedOpen.add(path);
  stderr.write(`${terminalText(`tunnel: warning: ${path} is open to others (mode ${mode.toString(8).padStart(4, '0')}), and its tokens log in as you: chmod 600 it`)}\n`);
}

/** The stored login, or undefined; with `stderr`, a file open to others is warned about (warnIfOpen). */
export function readCredentials(ctx: Pick<Context, 'env' | 'homeDir'> & Partial<Pick<Context, 'stderr'>>): Credentials | undefined {
  const path = join(configDir(ctx), 'credentials.json');
  const raw = readJson(path);
  if (raw === undefined) return undefined;
  warnIfOpen(path, raw.mode, ctx.stderr);
  const parsed = CredentialsSchema.safeParse(raw.json);
  return parsed.success ? parsed.data : undefined;
}

export function writeCredentials(ctx: Pick<Context, 'env' | 'homeDir'>, creds: Credentials): void {
  writeJson(join(configDir(ctx), 'credentials.json'), creds, 0o600);
}

export function deleteCredentials(ctx: Pick<Context, 'env' | 'homeDir'>): boolean {
  const path = join(configDir(ctx), 'credentials.json');
  const existed = existsSync(path);
  rmSync(path, { force: true });
  return existed;
}

/**
 * The control plane URL: `--server`/`--control-url` flag, then `TUNNEL_SERVER`, then the config
 * file, then the stored credentials' server. Several replicas are given as a comma-separated
 * list (`https://a.example:8443,https://b.example:8443`): requests go to the first that answers,
 * in order, moving on when one cannot be reached (see ApiClient). The list is kept as one string
 * (the login's key), normalized: each URL without a trailing slash.
 */
export function resolveServer(ctx: Pick<Context, 'env' | 'homeDir'> & Partial<Pick<Context, 'stderr'>>, flag: string | undefined): string | undefined {
  const raw = flag ?? ctx.env.TUNNEL_SERVER ?? readConfigFile(ctx).server ?? readCredentials(ctx)?.server;
  if (!raw) return undefined;
  const urls = raw.split(',').map((s) => s.trim());
  if (urls.length > MAX_SERVER_URLS) throw new CliError(EXIT.USAGE, `at most ${MAX_SERVER_URLS} server URLs, got ${urls.length}`);
  return urls.map((one) => normalizeServerUrl(one)).join(',');
}

const MiB = 1024 * 1024;

/** The CLI's adaptive-window budget when TUNNEL_WINDOW_BUDGET is not set (cli/ssh/windows.ts). */
export const DEFAULT_WINDOW_BUDGET = 128 * MiB;

/**
 * TUNNEL_WINDOW_BUDGET: whole MiB all of this process's channels to Tunnel's relay may grow
 * their windows by together (0: off). Anything else than whole MiB is refused, not replaced by
 * the default.
 */
export function resolveWindowBudget(ctx: Pick<Context, 'env'>): number {
  const v = ctx.env.TUNNEL_WINDOW_BUDGET;
  if (v === undefined || v === '') return DEFAULT_WINDOW_BUDGET;
  if (!/^\d{1,6}$/.test(v)) throw new CliError(EXIT.USAGE, `TUNNEL_WINDOW_BUDGET must be whole MiB from 0 (off) to 999999, got "${v.slice(0, 40)}"`);
  return Number(v) * MiB;
}

/** Replicas one server list may name. */
export const MAX_SERVER_URLS = 8;

/** Longest server URL taken (one replica). */
const MAX_SERVER_URL_LENGTH = 2048;

/** A user's entry in an error message: quoted (no line breaks), and cut short. */
const quoted = (raw: string) => JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}...` : raw);

function normalizeServerUrl(raw: string): string {
  if (raw.length > MAX_SERVER_URL_LENGTH) throw new CliError(EXIT.USAGE, `server URL ${quoted(raw)} is longer than ${MAX_SERVER_URL_LENGTH} characters`);
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(EXIT.USAGE, `server URL ${quoted(raw)} is not a URL (e.g. https://tunnel.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(EXIT.USAGE, `server URL must be http(s): ${quoted(raw)}`);
  return u.toString().replace(/\/$/, '');
}

/** The URLs of a server string (one, or a comma-separated list of replicas). */
export function serverUrls(server: string): string[] {
  return server.split(',').filter((s) => s.length > 0);
}

const truthy = (v: string | undefined) => ['1', 'true', 'yes'].includes((v ?? '').toLowerCase());

/**
 * How to trust `server`: flags first, then TUNNEL_CA_PIN / TUNNEL_CA_FILE / TUNNEL_INSECURE_HTTP,
 * then what `tunnel login` stored for that server. A pin or CA file given explicitly replaces the
 * stored one (neither is merged with the other).
 */
export function resolveTrust(ctx: Pick<Context, 'env' | 'homeDir'>, server: string, flags: TrustSettings = {}): TrustSettings {
  const caPin = flags.caPin ?? (ctx.env.TUNNEL_CA_PIN || undefined);
  const caFile = flags.caFile ?? (ctx.env.TUNNEL_CA_FILE || undefined);
  const stored = readConfigFile(ctx).servers?.[server] ?? {};
  const explicit = caPin !== undefined || caFile !== undefined;
  const trust: TrustSettings = {
    caPin: explicit ? caPin : stored.ca_pin,
    caFile: explicit ? caFile : stored.ca_file,
    insecureHttp: flags.insecureHttp === true || truthy(ctx.env.TUNNEL_INSECURE_HTTP) || stored.insecure_http === true,
  };
  try {
    if (trust.caPin !== undefined) trust.caPin = parsePin(trust.caPin);
  } catch (err) {
    throw new CliError(EXIT.USAGE, (err as TrustError).message);
  }
  if (trust.caPin && trust.caFile) throw new CliError(EXIT.USAGE, 'give either --ca-pin or --ca-file, not both');
  return trust;
}

/** Remembers how to trust `server` (after a successful login). */
export function storeTrust(ctx: Pick<Context, 'env' | 'homeDir'>, server: string, trust: TrustSettings): void {
  const cfg = readConfigFile(ctx);
  const entry: ServerTrust = {
    ...(trust.caPin ? { ca_pin: trust.caPin } : {}),
    ...(trust.caFile ? { ca_file: trust.caFile } : {}),
    ...(trust.insecureHttp ? { insecure_http: true } : {}),
  };
  writeConfigFile(ctx, { ...cfg, server, servers: { ...(cfg.servers ?? {}), [server]: entry } });
}
