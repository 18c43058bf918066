import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { AppEnv } from '../http/env.js';
import { servedOverHttps } from '../http/security-headers.js';

/**
 * The console's cookies. All are HttpOnly and SameSite=Strict; over HTTPS they are `Secure` and
 * carry the `__Host-` prefix (bound to this origin, path `/`, no Domain), so no sibling host can
 * set or read them. They hold the console session's OAuth tokens (the same access and refresh
 * tokens `tunnel login` gets) and the CSRF secret that every form echoes.
 */
export type CookieName = 'at' | 'rt' | 'csrf';

function fullName(c: Context<AppEnv>, name: CookieName): string {
  return `${servedOverHttps(c) ? '__Host-' : ''}tunnel_${name}`;
}

export function readCookie(c: Context<AppEnv>, name: CookieName): string | undefined {
  const v = getCookie(c, fullName(c, name));
  return v && v.length <= 4096 ? v : undefined;
}

export function writeCookie(c: Context<AppEnv>, name: CookieName, value: string, maxAgeSeconds: number): void {
  setCookie(c, fullName(c, name), value, {
    path: '/',
    httpOnly: true,
    sameSite: 'Strict',
    secure: servedOverHttps(c),
    maxAge: Math.max(1, Math.floor(maxAgeSeconds)),
  });
}

export function clearCookie(c: Context<AppEnv>, name: CookieName): void {
  deleteCookie(c, fullName(c, name), { path: '/', secure: servedOverHttps(c) });
}
