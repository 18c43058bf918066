import type { Context } from 'hono';
import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CONSOLE_CLIENT_ID } from '../../auth/sessions.js';
import { ApiSession, SignedOut } from '../api-session.js';
import { readCookie } from '../cookies.js';
import { csrfOk, csrfToken, newCsrf } from '../csrf.js';
import { CsrfField, Layout, Notice } from '../layout.js';
import { doneMessage, fromAnotherSite, openAgain, page } from '../page.js';

/** Only paths inside the console are followed after sign-in (no open redirect). */
function safeNext(next: string | undefined): string {
  return next && /^\/console\/[A-Za-z0-9/_-]*$/.test(next) ? next : '/console/exposures';
}

function signInPage(c: Context<AppEnv>, opts: { next: string; error?: string; info?: string; user?: string }, status = 200) {
  return c.html(
    <Layout title="Sign in">
      {opts.error ? <Notice kind="err">{opts.error}</Notice> : null}
      {opts.info ? <Notice kind="ok">{opts.info}</Notice> : null}
      <form class="stack" method="post" action="/console/login">
        <CsrfField token={csrfToken(c)} />
        <input type="hidden" name="next" value={opts.next} />
        <label for="username">User name</label>
        <input id="username" name="username" autocomplete="username" required maxlength={64} value={opts.user ?? ''} />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required maxlength={1024} />
        <p>
          <button type="submit">Sign in</button>
        </p>
      </form>
    </Layout>,
    status as 200,
  );
}

export function registerSignIn(r: Hono<AppEnv>, app: App): void {
  r.get('/login', (c) => {
    // A link from another site carries no cookies: the form's CSRF secret would be a new one,
    // replacing the browser's and failing the forms open in its other tabs (and a browser
    // signed in would be shown the sign-in form). Opened again from this origin, with them.
    if (fromAnotherSite(c)) return openAgain(c);
    const info = doneMessage(c);
    return signInPage(c, { next: safeNext(c.req.query('next')), info });
  });

  r.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const field = (k: string, max: number) => (typeof form[k] === 'string' ? (form[k] as string).slice(0, max) : '');
    const next = safeNext(field('next', 256));
    const username = field('username', 64);
    if (!csrfOk(c, form._csrf)) {
      return signInPage(c, { next, user: username, error: 'The sign-in form expired. Try again.' }, 403);
    }
    const api = new ApiSession(app, c);
    const res = await api.anonymous<{ access_token: string; expires_in: number; refresh_token?: string }>('POST', '/v1/auth/token', {
      grant_type: 'password',
      username,
      password: field('password', 1024),
      client_id: CONSOLE_CLIENT_ID,
    });
    if (!res.ok) {
      const error = res.problem.status === 429 ? 'Too many attempts. Wait a minute and try again.' : 'Wrong user name or password.';
      return signInPage(c, { next, user: username, error }, res.problem.status === 429 ? 429 : 401);
    }
    api.remember(res.body);
    newCsrf(c);
    return c.redirect(next, 303);
  });

  r.post(
    '/logout',
    page(app, async ({ c, api }) => {
      const rt = readCookie(c, 'rt');
      try {
        await api.call('POST', '/v1/auth/logout', rt ? { refresh_token: rt } : {});
      } catch (err) {
        if (!(err instanceof SignedOut)) throw err;
      }
      api.forget();
      return c.redirect('/console/login?done=signed-out', 303);
    }),
  );
}
