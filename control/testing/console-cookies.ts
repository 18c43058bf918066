import assert from 'node:assert/strict';
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

/** The named inputs of the form posting to `action` in `html`, with their values. */
export function formFields(html: string, action: string): Record<string, string> {
  const start = html.indexOf(`action="${action}"`);
  assert.ok(start >= 0, `a form posting to ${action}`);
  const form = html.slice(start, html.indexOf('</form>', start));
  const fields: Record<string, string> = {};
  for (const m of form.matchAll(/<input\b[^>]*>/g)) {
    const name = /\bname="([^"]*)"/.exec(m[0])?.[1];
    if (name !== undefined) fields[name] = /\bvalue="([^"]*)"/.exec(m[0])?.[1] ?? '';
  }
  return fields;
}
