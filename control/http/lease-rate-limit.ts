import type { CallerRateLimit } from './authenticate.js';

/**
 * Caps lease issuance per user and minute (`leaseRateLimit`), across all of the user's access and
 * service tokens (issue 9, finding 9): a lease is a row, an audit row and two signatures, and one
 * member must not be able to mint them without bound. The route's guard counts the attempt once
 * the caller is authenticated, in the same statement that looks the caller up (one round trip
 * less per lease, issue 11), and refuses it before the route runs.
 */
export const LEASE_ISSUANCE_LIMIT: CallerRateLimit = {
  key: (userId) => `lease:${userId}`,
  limit: (settings) => settings.leaseRateLimit,
};
