import type { Dispatcher } from 'undici';
import type { z } from 'zod';
import { GRANT_SERVICE_TOKEN, TokenResponseSchema, type TokenResponse } from '../protocol/api-types.js';
import { ApiClient, ApiError } from './api-client.js';
import type { Context } from './context.js';
import { EXIT, notLoggedIn } from './errors.js';
import { readCredentials, resolveServer, writeCredentials, type Credentials } from './settings.js';

/** The access token is refreshed this long before it expires. */
const REFRESH_MARGIN_MS = 30_000;

/**
 * A Session loaded at its first call (whose arguments are evaluated first): a command checks its
 * input before the login is looked at, so malformed input is a usage error (exit 2) whether or
 * not one is logged in (not 3).
 */
export function lazySession(ctx: Context, server: string | undefined): Pick<Session, 'call'> & { load(): Session } {
  let session: Session | undefined;
  const load = () => (session ??= Session.load(ctx, server));
  return { load, call: (method, path, schema, body, signal) => load().call(method, path, schema, body, signal) };
}

/**
 * An API client that carries the stored login: refreshes the access token before it expires
 * (rotating the refresh token, or exchanging the service token again) and stores the result.
 */
export class Session {
  readonly api: ApiClient;
  #creds: Credentials;
  readonly #ctx: Context;

  private constructor(ctx: Context, api: ApiClient, creds: Credentials) {
    this.#ctx = ctx;
    this.api = api;
    this.#creds = creds;
  }

  static load(ctx: Context, server: string | undefined): Session {
    const creds = readCredentials(ctx);
    if (!creds) throw notLoggedIn();
    // --server as typed (a trailing slash, upper-case scheme or host, spaces in a list) names the
    // login's server when it normalizes to it, as tunnel login stored it; a malformed one is a usage error.
    const wanted = server ? resolveServer(ctx, server) : undefined;
    if (wanted && wanted !== creds.server) throw notLoggedIn(`logged in to ${creds.server}, not ${wanted}`);
    return new Session(ctx, ApiClient.forServer(ctx, creds.server), creds);
  }

  get user(): string | undefined {
    return this.#creds.user;
  }

  /** The stored refresh token (rotated by each refresh), if this login has one. */
  get refreshToken(): string | undefined {
    return this.#creds.refresh_token;
  }

  /** `signal`: a stop that cancels a service token's exchange in flight (RequestOptions); a refresh token's rotation is never cancelled. */
  async token(force = false, signal?: AbortSignal): Promise<string> {
    if (!force && this.#creds.access_expires_at - Date.now() > REFRESH_MARGIN_MS) return this.#creds.access_token;
    // Another tunnel process on this login (tunnel expose and tunnel open side by side, or any
    // command run meanwhile) may have refreshed it since this one read the credentials: the
    // refresh token held here is then spent, and presenting it after the control plane's reuse
    // grace ends the whole session as a stolen copy. The stored, newer tokens of the same session
    // are taken instead.
    if (this.#adoptStored() && !force && this.#creds.access_expires_at - Date.now() > REFRESH_MARGIN_MS) return this.#creds.access_token;
    let t: TokenResponse;
    try {
      if (this.#creds.service_token) {
        t = await this.api.call('POST', '/v1/auth/token', TokenResponseSchema, {
          body: { grant_type: GRANT_SERVICE_TOKEN, service_token: this.#creds.service_token },
          ...(signal ? { signal } : {}),
        });
      } else if (this.#creds.refresh_token) {
        // Not cancelled by a stop (only bounded by the request's timeout): the control plane may
        // already have rotated the refresh token, and an answer dropped here would leave the spent
        // one stored, whose next use past the reuse grace ends the whole login.
        t = await this.api.call('POST', '/v1/auth/token', TokenResponseSchema, {
          body: { grant_type: 'refresh_token', refresh_token: this.#creds.refresh_token },
        });
      } else {
        throw notLoggedIn('the login expired');
      }
    } catch (err) {
      if (err instanceof ApiError && err.exitCode === EXIT.NOT_LOGGED_IN) throw notLoggedIn('the login expired or was revoked');
      throw err;
    }
    const before = this.#creds;
    this.#creds = {
      ...this.#creds,
      access_token: t.access_token,
      access_expires_at: Date.now() + t.expires_in * 1000,
      ...(t.refresh_token ? { refresh_token: t.refresh_token } : {}),
    };
    // Stored only over this login's own earlier tokens (or none): a newer `tunnel login` (another
    // session, user or server) stays what the next command uses.
    if (this.#ownsStored(before)) writeCredentials(this.#ctx, this.#creds);
    return this.#creds.access_token;
  }

  /**
   * Whether the stored credentials are this login's as `before` the refresh (sameLogin), or there
   * are none, or they are unreadable (replaced by a login that works).
   */
  #ownsStored(before: Credentials): boolean {
    const stored = this.#readStored();
    return stored === undefined || stored === 'unreadable' || sameLogin(stored, before);
  }

  /** Takes the stored tokens when they are this login session's and newer than the ones held here. */
  #adoptStored(): boolean {
    if (this.#creds.service_token || !this.#creds.refresh_token) return false;
    const stored = this.#readStored();
    if (stored === undefined || stored === 'unreadable' || !stored.refresh_token || stored.refresh_token === this.#creds.refresh_token) return false;
    if (stored.access_expires_at <= this.#creds.access_expires_at || !sameLogin(stored, this.#creds)) return false;
    this.#creds = { ...this.#creds, access_token: stored.access_token, access_expires_at: stored.access_expires_at, refresh_token: stored.refresh_token };
    return true;
  }

  #readStored(): Credentials | undefined | 'unreadable' {
    try {
      return readCredentials(this.#ctx);
    } catch {
      return 'unreadable';
    }
  }

  /** Calls the API with the login's access token (refreshed first when due); `signal`: see RequestOptions. */
  async call<T extends z.ZodType>(method: Dispatcher.HttpMethod, path: string, schema: T | null, body?: unknown, signal?: AbortSignal): Promise<z.infer<T>> {
    const stop = signal ? { signal } : {};
    try {
      return await this.api.call(method, path, schema, { token: await this.token(false, signal), body, ...stop });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'TOKEN_EXPIRED') {
        return this.api.call(method, path, schema, { token: await this.token(true, signal), body, ...stop });
      }
      throw err;
    }
  }
}

/** Whether two stored logins are one: the same server, and the same service token, refresh token or session (`sid`). */
function sameLogin(a: Credentials, b: Credentials): boolean {
  if (a.server !== b.server) return false;
  if (b.service_token) return a.service_token === b.service_token;
  if (a.refresh_token !== undefined && a.refresh_token === b.refresh_token) return true;
  const sid = sessionOf(b.access_token);
  return sid !== undefined && sessionOf(a.access_token) === sid;
}

/** The login session (`sid` claim) an access token was issued in, read without verifying it. */
function sessionOf(accessToken: string): string | undefined {
  try {
    const payload: unknown = JSON.parse(Buffer.from(accessToken.split('.')[1] ?? '', 'base64url').toString('utf8'));
    const sid = (payload as { sid?: unknown } | null)?.sid;
    return typeof sid === 'string' && sid.length > 0 ? sid : undefined;
  } catch {
    return undefined;
  }
}
