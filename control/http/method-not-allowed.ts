import type { Hono } from 'hono';

interface RoutePattern {
  method: string;
  re: RegExp;
}

/**
 * The methods the app serves at a path, from its registered routes (middleware, registered for
 * every method, does not count). Used to answer 405 with `Allow` (RFC 9110 §15.5.6) when a path
 * exists but not for the request's method. Built once, on first use, after every route is in.
 */
export function allowedMethods(app: Pick<Hono, 'routes'>): (path: string) => string[] {
  let patterns: RoutePattern[] | undefined;
  return (path) => {
    patterns ??= app.routes.filter((r) => r.method !== 'ALL').map((r) => ({ method: r.method.toUpperCase(), re: toRegExp(r.path) }));
    const methods = new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method));
    // Hono answers HEAD with the GET handler.
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  };
}

function toRegExp(routePath: string): RegExp {
  const body = routePath
    .split('/')
    .map((seg) => {
      if (seg === '*') return '.*';
      if (seg.startsWith(':')) return '[^/]+';
      return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${body}/?$`);
}
