import type { MiddlewareHandler } from 'hono';
import { API_LEVEL_HEADER, peerOf, readApiLevel, servesApiLevel, unsupportedLevelDetail } from '../../protocol/api-level.js';
import { AppError } from '../lib/errors.js';
import type { AppEnv } from './env.js';

/**
 * Refuses a request whose Tunnel-Api level this control plane does not serve (400
 * API_LEVEL_UNSUPPORTED, the detail naming the levels served), before its body is read or
 * validated. A request without the header is served (protocol/api-level.ts).
 */
export const requireServedApiLevel: MiddlewareHandler<AppEnv> = async (c, next) => {
  const level = readApiLevel(c.req.header(API_LEVEL_HEADER));
  if (servesApiLevel(level)) return next();
  // Not logged: a relay upgraded out of order asks again every second or so, and logs the refusal itself.
  throw new AppError('API_LEVEL_UNSUPPORTED', unsupportedLevelDetail(level, peerOf(c.req.header('user-agent'))));
};
