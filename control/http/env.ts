import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Deps } from '../deps.js';
import type { Logger } from '../lib/logger.js';
import type { nodes } from '../db/schema/index.js';

/** Who is calling: a user through an access token (possibly minted from a scoped service token). */
export interface Principal {
  userId: string;
  name: string;
  role: 'admin' | 'member';
  /** Scopes of the service token behind this access token; null for interactive logins. */
  scopes: string[] | null;
  serviceTokenId: string | null;
  /** The login session (refresh token family) of an interactive login's access token. */
  sessionId: string | null;
}

export type NodeRow = typeof nodes.$inferSelect;

export interface AppEnv {
  Variables: {
    deps: Deps;
    requestId: string;
    logger: Logger;
    principal: Principal;
    node: NodeRow;
    /** Set on the OAuth endpoints: form bodies allowed, errors as RFC 6749 §5.2 JSON. */
    oauth: boolean;
    /** The OAuth endpoint's validated request (form or JSON), set by oauthBody. */
    oauthRequest: unknown;
  };
}

export type App = OpenAPIHono<AppEnv>;
