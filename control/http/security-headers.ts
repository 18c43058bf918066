import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from './env.js';

/**
 * Whether the browser reached this answer over HTTPS: this server speaks TLS itself, or the
 * operator declared (an https: `--public-url`) that a TLS-terminating proxy is in front. Decides
 * the console cookies' `Secure`/`__Host-` and Strict-Transport-Security.
 */
export function servedOverHttps(c: Context<AppEnv>): boolean {
  return new URL(c.req.url).protocol === 'https:' || (c.get('deps')?.settings.issuer.startsWith('https:') ?? false);
}

/**
 * Over HTTPS, browsers are told to use nothing else for this host for a year (RFC 6797): no
 * plain-HTTP first request for an attacker on the network to answer, and no clicking through a
 * certificate error. Not `includeSubDomains`: the other hosts under this name are not ours. Never
 * sent over plain HTTP (where browsers ignore it anyway).
 */
export const HSTS = 'max-age=31536000';

/**
 * Headers every response carries (issue 9, finding 7). API responses are data, never documents:
 * no sniffing, no framing, no referrer, and a CSP that allows nothing. Pages that render HTML
 * (/device, /docs, /console) set their own CSP, referrer policy and caching first; those are kept.
 */
export const ALWAYS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cross-origin-resource-policy': 'same-origin',
};
export const DEFAULTS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  // The console keeps `same-origin`: with `no-referrer` browsers send `Origin: null` on form posts.
  'referrer-policy': 'no-referrer',
};

const ALWAYS_ENTRIES = Object.entries(ALWAYS);
const DEFAULT_ENTRIES = Object.entries(DEFAULTS);

export const securityHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  const h = c.res.headers;
  for (const [k, v] of ALWAYS_ENTRIES) h.set(k, v);
  for (const [k, v] of DEFAULT_ENTRIES) if (!h.has(k)) h.set(k, v);
  if (servedOverHttps(c)) h.set('strict-transport-security', HSTS);
  // Answers to authenticated API calls are personal: never stored by a shared cache.
  if (c.req.path.startsWith('/v1/') && !h.has('cache-control')) h.set('cache-control', 'no-store');
};
