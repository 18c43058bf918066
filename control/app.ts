import { OpenAPIHono } from '@hono/zod-openapi';
import { RegExpRouter } from 'hono/router/reg-exp-router';
import { AppError } from './lib/errors.js';
import type { Deps } from './deps.js';
import type { AppEnv } from './http/env.js';
import { problemResponse, validationError } from './http/problem.js';
import { limitBody, requireJson } from './http/request-guards.js';
import { allowedMethods } from './http/method-not-allowed.js';
import { securityHeaders } from './http/security-headers.js';
import { requireServedApiLevel } from './http/api-level.js';
import { leaseCallerBeforeValidation } from './http/authenticate.js';
import { OAUTH_PATHS, oauthEndpoint } from './http/oauth.js';
import { registerWellKnown } from './routes/well-known.js';
import { registerAuth } from './routes/auth.js';
import { registerDevicePage } from './routes/device-page.js';
import { registerUsers } from './routes/users.js';
import { registerServiceTokens } from './routes/service-tokens.js';
import { registerNodes } from './routes/nodes.js';
import { registerNodeSelf } from './routes/node-self.js';
import { registerExposures } from './routes/exposures.js';
import { registerEgressTargets } from './routes/egress-targets.js';
import { registerLeases } from './routes/leases.js';
import { registerAudit } from './routes/audit.js';
import { registerConnections } from './routes/connections.js';
import { registerDocs } from './routes/docs.js';
import { registerConsole } from './console/register.js';

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Builds the control plane's Hono app. Does no I/O when called or imported; every piece of state
 * lives in `deps.db`, so any number of replicas can serve the same database.
 */
export function createApp(deps: Deps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    // One regular expression per method instead of a trie walk per request (issue 11). It holds
    // every path shape but a literal beside a parameter at the same level (`/a/:id/x` with
    // `/a/b`): such a route fails here, at start, where Hono's default would silently fall back
    // to its trie router for the whole app.
    router: new RegExpRouter(),
    defaultHook: async (result, c) => {
      if (result.success) return;
      await leaseCallerBeforeValidation(c);
      throw validationError(result.target, result.error);
    },
  });

  app.use('*', securityHeaders);
  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID_RE.test(incoming) ? incoming : deps.ids.id('req');
    c.set('deps', deps);
    c.set('requestId', requestId);
    c.set('logger', deps.logger.child({ requestId }));
    c.header('x-request-id', requestId);
    await next();
    deps.metrics.inc('tunnel_control_http_requests_total', 'HTTP requests by route and status', {
      method: c.req.method,
      route: c.req.routePath,
      status: String(c.res.status),
    });
  });
  // The API only: console pages, the device page, /docs and /healthz are for browsers and health
  // checks, which state no level (the console's own API calls state this build's).
  app.use('/v1/*', requireServedApiLevel);
  for (const path of OAUTH_PATHS) app.use(path, oauthEndpoint);
  app.use('/v1/*', limitBody(deps.settings.maxBodyBytes), requireJson);
  app.use('/device/*', limitBody(16 * 1024));

  registerWellKnown(app);
  registerAuth(app);
  registerDevicePage(app);
  registerUsers(app);
  registerServiceTokens(app);
  registerNodes(app);
  registerNodeSelf(app);
  registerExposures(app);
  registerEgressTargets(app);
  registerLeases(app);
  registerAudit(app);
  registerConnections(app);
  registerDocs(app);
  registerConsole(app);

  const methodsAt = allowedMethods(app);
  app.notFound((c) => {
    const allow = methodsAt(c.req.path);
    if (allow.length > 0) {
      return problemResponse(
        c,
        new AppError('METHOD_NOT_ALLOWED', `${c.req.method} is not allowed on ${c.req.path}; use ${allow.join(', ')}`, {
          headers: { allow: allow.join(', ') },
        }),
      );
    }
    return problemResponse(c, new AppError('NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`));
  });
  app.onError((err, c) => problemResponse(c, err));
  return app;
}
