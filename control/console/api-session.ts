import { readProblem } from '../../protocol/problem.js';
import type { Context } from 'hono';
import type { App, AppEnv } from '../http/env.js';
import { clearCookie, readCookie, writeCookie } from './cookies.js';
import { API_LEVEL, API_LEVEL_HEADER } from '../../protocol/api-level.js';

/**
 * The console is a client of the control plane's own API: every read and every change a page
 * makes is an HTTP request to `/v1/...` with the signed-in user's access token, answered by the
 * same routes, authorization policy, validation and audit as `tunnel` and curl. So a page can
 * never show or do more than the API allows that user. The requests are dispatched in-process
 * (`app.fetch` with the caller's connection), so per-address rate limits still see the browser.
 */

export interface Problem {
  status: number;
  code: string;
  detail: string;
}

export type ApiResult<T> = { ok: true; status: number; body: T } | { ok: false; problem: Problem };

/** Thrown when the session is gone (no cookie, logged out, refresh refused): sign in again. */
export class SignedOut extends Error {
  constructor() {
    super('signed out');
    this.name = 'SignedOut';
  }
}

/** The headers passed through from the browser's request to the in-process API request. */
const PASS_THROUGH = ['x-forwarded-for', 'x-request-id', 'user-agent'];

export class ApiSession {
  private refreshed = false;
  /**
   * The access token this request refreshed, if it did: the request's own cookie is still the
   * old one (or gone), and every later call of the same page must use the new token.
   */
  private fresh: string | undefined;
  /** This answer set the session's cookies (sign-in, refresh). */
  private wrote = false;

  constructor(
    private readonly app: App,
    private readonly c: Context<AppEnv>,
  ) {}

  /** A request without the session's token (sign-in). */
  async anonymous<T>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> {
    return this.send<T>(method, path, body, undefined);
  }

  /** A request as the signed-in user; refreshes the access token once when it has expired. */
  async call<T>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> {
    let token = this.fresh ?? readCookie(this.c, 'at');
    if (!token) token = await this.refresh();
    let res = await this.send<T>(method, path, body, token);
    if (!res.ok && res.problem.status === 401 && !this.refreshed) {
      token = await this.refresh();
      res = await this.send<T>(method, path, body, token);
    }
    if (!res.ok && res.problem.status === 401) {
      this.forget();
      throw new SignedOut();
    }
    return res;
  }

  /** Stores a fresh token pair from the token endpoint in the session cookies. */
  remember(tokens: { access_token: string; expires_in: number; refresh_token?: string }): void {
    this.wrote = true;
    writeCookie(this.c, 'at', tokens.access_token, tokens.expires_in);
    if (tokens.refresh_token) writeCookie(this.c, 'rt', tokens.refresh_token, this.c.get('deps').settings.refreshTokenTtl);
  }

  /**
   * Deletes the session's cookies: those the request carried, or this answer set. Not the others:
   * a request that carried none (a link from another site: SameSite=Strict cookies are not sent
   * with it) must not delete them, which signed the browser out.
   */
  forget(): void {
    for (const name of ['at', 'rt', 'csrf'] as const) {
      if (this.wrote || readCookie(this.c, name) !== undefined) clearCookie(this.c, name);
    }
  }

  private async refresh(): Promise<string> {
    const rt = readCookie(this.c, 'rt');
    if (!rt || this.refreshed) {
      this.forget();
      throw new SignedOut();
    }
    this.refreshed = true;
    const res = await this.send<{ access_token: string; expires_in: number; refresh_token?: string }>(
      'POST',
      '/v1/auth/token',
      { grant_type: 'refresh_token', refresh_token: rt },
      undefined,
    );
    if (!res.ok) {
      this.forget();
      throw new SignedOut();
    }
    this.remember(res.body);
    this.fresh = res.body.access_token;
    return res.body.access_token;
  }

  private async send<T>(method: string, path: string, body: unknown, token: string | undefined): Promise<ApiResult<T>> {
    const headers = new Headers();
    for (const h of PASS_THROUGH) {
      const v = this.c.req.header(h);
      if (v !== undefined) headers.set(h, v);
    }
    headers.set('x-request-id', this.c.get('requestId'));
    // The console is this build: its calls are of this build's level, whatever the browser sent.
    headers.set(API_LEVEL_HEADER, String(API_LEVEL));
    if (token) headers.set('authorization', `Bearer ${token}`);
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers.set('content-type', 'application/json');
    }
    const url = new URL(path, this.c.req.url);
    const res = await this.app.fetch(new Request(url, { method, headers, body: payload }), this.c.env);
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (res.ok) return { ok: true, status: res.status, body: parsed as T };
    const p = readProblem(res.status, parsed);
    return { ok: false, problem: { status: res.status, code: p.code ?? 'ERROR', detail: p.detail } };
  }
}
