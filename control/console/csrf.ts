import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import type { AppEnv } from '../http/env.js';
import { readCookie, writeCookie } from './cookies.js';

/**
 * CSRF defence for every console form, in two layers: the session cookies are SameSite=Strict,
 * and every POST must echo the per-browser secret from the (HttpOnly) `csrf` cookie in a hidden
 * `_csrf` field (double submit), and carry no foreign `Origin`. The secret is renewed at sign-in,
 * so a token learned before signing in is useless after.
 */
const CSRF_TTL = 30 * 86400;

export function newCsrf(c: Context<AppEnv>): string {
  const token = randomBytes(32).toString('base64url');
  writeCookie(c, 'csrf', token, CSRF_TTL);
  return token;
}

/** The browser's CSRF secret, created on first use. */
export function csrfToken(c: Context<AppEnv>): string {
  return readCookie(c, 'csrf') ?? newCsrf(c);
}

function sameOrigin(c: Context<AppEnv>, origin: string): boolean {
  const allowed = new Set([new URL(c.req.url).origin, new URL(c.get('deps').settings.issuer).origin]);
  return allowed.has(origin);
}

/** True when a form post carries the right secret and no foreign origin. */
export function csrfOk(c: Context<AppEnv>, presented: unknown): boolean {
  const origin = c.req.header('origin');
  if (origin !== undefined && !sameOrigin(c, origin)) return false;
  const expected = readCookie(c, 'csrf');
  if (!expected || typeof presented !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
