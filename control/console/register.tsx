import { Hono } from 'hono';
import type { App, AppEnv } from '../http/env.js';
import { limitBody } from '../http/request-guards.js';
import { SCRIPT, STYLESHEET } from './assets.js';
import { MAX_FORM_BODY, simplePage } from './page.js';
import { registerSignIn } from './pages/sign-in.js';
import { registerExposures } from './pages/exposures.js';
import { registerConnections } from './pages/connections.js';
import { registerNodes } from './pages/nodes.js';
import { registerEgress } from './pages/egress.js';
import { registerTokens } from './pages/tokens.js';
import { registerUsers } from './pages/users.js';
import { registerAudit } from './pages/audit.js';

/**
 * The web console under `/console`: server-rendered pages (hono/jsx) that are a client of the
 * `/v1` API as the signed-in user. Strict CSP (only this origin's stylesheet and script, no
 * inline code), no framing, no caching of pages, form bodies capped.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function registerConsole(app: App): void {
  const r = new Hono<AppEnv>();
  r.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-frame-options', 'DENY');
    c.header('x-content-type-options', 'nosniff');
    // same-origin (not no-referrer): browsers then still send Origin on form posts, which the CSRF check reads.
    c.header('referrer-policy', 'same-origin');
    c.header('cross-origin-opener-policy', 'same-origin');
    if (!c.res.headers.has('cache-control')) c.header('cache-control', 'no-store');
  });
  r.use('*', limitBody(MAX_FORM_BODY));

  for (const asset of [STYLESHEET, SCRIPT]) {
    const type = asset.path.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8';
    r.get(asset.path.slice('/console'.length), (c) => {
      c.header('cache-control', 'public, max-age=31536000, immutable');
      return c.body(asset.body, 200, { 'content-type': type });
    });
  }

  registerSignIn(r, app);
  registerExposures(r, app);
  registerConnections(r, app);
  registerNodes(r, app);
  registerEgress(r, app);
  registerTokens(r, app);
  registerUsers(r, app);
  registerAudit(r, app);
  // The requested path is not repeated: escaped it cannot run, but a link to /console/<words>
  // would still put a stranger's words on this origin's page, for phishing.
  r.all('*', (c) => simplePage(c, 'Not found', 'There is no console page at this address.', 404));

  for (const path of ['/', '/console', '/console/']) app.get(path, (c) => c.redirect('/console/exposures', 303));
  app.route('/console', r);
}
