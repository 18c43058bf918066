import type { MiddlewareHandler } from 'hono';
import { rateLimit } from '../services/rate-limit.js';
import type { AppEnv } from './env.js';

/**
 * Caps lease issuance per user and minute (`leaseRateLimit`), across all of the user's access and
 * service tokens (issue 9, finding 9): a lease is a row, an audit row and two signatures, and one
 * member must not be able to mint them without bound. Runs after the route's guard.
 */
export const limitLeaseIssuance: MiddlewareHandler<AppEnv> = async (c, next) => {
  const deps = c.get('deps');
  await rateLimit(deps.db, deps.clock.now(), `lease:${c.get('user').userId}`, deps.settings.leaseRateLimit);
  await next();
};
