import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Deps } from '../deps.js';
import type { Logger } from '../../shared/logger.js';
import type { nodes } from '../db/schema/index.js';
import type { Principal, UserPrincipal } from '../services/authz.js';
import type { CallerExposure, DeferredLeaseCaller } from './authenticate.js';
import type { CallerAsRead } from '../services/lease-insert.js';

export type NodeRow = typeof nodes.$inferSelect;

export interface AppEnv {
  Variables: {
    deps: Deps;
    requestId: string;
    logger: Logger;
    /** Who is calling, as the route's guard authenticated it (see services/authz.ts). */
    principal: Principal;
    /** The same principal on routes whose action needs a user. */
    user: UserPrincipal;
    /** The exposure the request names, read with the caller by the guard (`exposureOf`, lease issuance). */
    callerExposure: CallerExposure;
    /** Lease issuance on the state last seen (GuardOptions.lastSeenLease): set instead of the caller lookup. */
    leaseLastSeen: DeferredLeaseCaller;
    /** Lease issuance: the caller as the guard (or `leaseCallerAgain`) read it, for the lease's locked insert. */
    callerAsRead: CallerAsRead;
    /** Lease issuance: looks the caller up again (uncounted) and sets `principal`, `user` and `callerAsRead`. */
    leaseCallerAgain: () => Promise<void>;
    /** The calling relay's row on routes whose action needs a node. */
    node: NodeRow;
    /** Set on the OAuth endpoints: form bodies allowed, errors as RFC 6749 §5.2 JSON. */
    oauth: boolean;
    /** The OAuth endpoint's validated request (form or JSON), set by oauthBody. */
    oauthRequest: unknown;
  };
}

export type App = OpenAPIHono<AppEnv>;
