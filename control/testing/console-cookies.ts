import type { TestApp } from './test-app.js';

/** A browser's cookies for the console's site, by name. */
export type Jar = Map<string, string>;

/** Applies a response's Set-Cookie headers to `jar` (Max-Age=0 deletes); returns them. */
export function takeCookies(jar: Jar, res: Response): string[] {
  const set = res.headers.getSetCookie();
  for (const line of set) {
    const [pair] = line.split(';');
    const i = pair!.indexOf('=');
    const name = pair!.slice(0, i);
    if (/;\s*Max-Age=0\b/i.test(line)) jar.delete(name);
    else jar.set(name, pair!.slice(i + 1));
  }
  return set;
}

/**
 * A console request as a browser sends it to `base` + `path`: the jar's cookies, a form POST when
 * `form` is given (a GET otherwise); the answer's cookies are taken into the jar.
 */
export async function consoleRequest(t: Pick<TestApp, 'app'>, base: string, jar: Jar, path: string, form?: Record<string, string>): Promise<{ res: Response; set: string[] }> {
  const headers: Record<string, string> = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  let body: string | undefined;
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const res = await t.app.fetch(new Request(`${base}${path}`, { method: form ? 'POST' : 'GET', headers, body }));
  return { res, set: takeCookies(jar, res) };
}
