import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from './app.js';
import type { Deps } from './deps.js';
import { DEFAULT_SETTINGS } from './deps.js';

/** createApp does no I/O: the handlers' dependencies are not touched by routing. */
const app = () => createApp({ settings: DEFAULT_SETTINGS } as unknown as Deps);

/** A concrete path that a route pattern matches: each parameter or wildcard becomes `x`. */
const concrete = (pattern: string) => pattern.replace(/:[^/{]+(\{[^}]*\})?/g, 'x').replace(/\*/g, 'x');

describe('control app routing', () => {
  it("routes with Hono's RegExpRouter, which holds every route (a path shape it cannot hold fails here)", () => {
    const a = app();
    assert.equal(a.router.name, 'RegExpRouter');
    const routes = a.routes.filter((r) => r.method !== 'ALL');
    assert.ok(routes.length > 100, `only ${routes.length} routes`);
    for (const r of routes) {
      const path = concrete(r.path);
      const [handlers] = a.router.match(r.method, path);
      assert.ok(
        handlers.some(([[h]]) => h === r.handler),
        `${r.method} ${r.path} (as ${path}) does not reach its handler`,
      );
    }
  });

  it("revoking all of a user's leases in the console posts outside /console/connections/:id", () => {
    const paths = app().routes.map((r) => `${r.method} ${r.path}`);
    assert.ok(paths.includes('POST /console/revoke-user'));
    assert.ok(!paths.includes('POST /console/connections/revoke-user'));
  });
});
