import type { Context } from 'hono';
import type { AppEnv } from './env.js';

/**
 * The caller's address for rate limiting and audit. Behind a load balancer (`trustProxy`) it is
 * the first X-Forwarded-For entry; on Node it is the socket's peer; elsewhere "unknown".
 */
export function clientAddress(c: Context<AppEnv>): string {
  if (c.get('deps').settings.trustProxy) {
    const xff = c.req.header('x-forwarded-for')?.split(',')[0]?.trim();
    if (xff) return xff.slice(0, 64);
  }
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? 'unknown';
}
