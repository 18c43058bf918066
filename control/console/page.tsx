import type { Context } from 'hono';
import type { Child } from 'hono/jsx';
import { ALLOW_LIST_MAX, USER_NAME_MAX } from '../../protocol/api-types.js';
import type { App, AppEnv } from '../http/env.js';
import { ApiSession, SignedOut, type Problem } from './api-session.js';
import { readCookie } from './cookies.js';
import { csrfOk, csrfToken } from './csrf.js';
import { Layout, Notice, type Me } from './layout.js';

/** What a console handler gets: the API as the signed-in user, who that is, and the form. */
export interface PageCtx {
  c: Context<AppEnv>;
  api: ApiSession;
  me: Me;
  csrf: string;
  /** The posted form fields (POST only); repeated fields keep their last value. */
  form: Record<string, string>;
  /** Renders a full console page for this user. */
  render(title: string, current: string, body: Child, status?: number): Response | Promise<Response>;
}

export type Handler = (p: PageCtx) => Promise<Response>;

/** How the console writes a list of names into a form field (nameList reads commas and spaces). */
export const NAME_LIST_SEPARATOR = ', ';

/**
 * The longest form field the console reads: the longest allow list the API takes, written as the
 * allow form writes it (its hidden `was`, the same names with ',', is shorter). A longer field is
 * refused with a page, never cut: a list cut short drops names, or ends in part of one, which can
 * be another user's name.
 */
export const MAX_FIELD = ALLOW_LIST_MAX * USER_NAME_MAX + (ALLOW_LIST_MAX - 1) * NAME_LIST_SEPARATOR.length;

/**
 * The longest form body (register.tsx): the allow form's two lists at MAX_FIELD, every character
 * percent-encoded (3 bytes; a name's characters are sent as they are, a separator's are not), and
 * 4 KiB for the form's other fields and the fields' names.
 */
export const MAX_FORM_BODY = 2 * 3 * MAX_FIELD + 4096;

/** A posted form's fields (repeated ones keep their last value); `tooLong` when one is longer than MAX_FIELD (left out). */
interface Form {
  fields: Record<string, string>;
  tooLong: boolean;
}

async function readForm(c: Context<AppEnv>): Promise<Form | null> {
  const type = c.req.header('content-type') ?? '';
  if (!/^(application\/x-www-form-urlencoded|multipart\/form-data)(\s*;|$)/i.test(type)) return null;
  const body = await c.req.parseBody();
  const form: Form = { fields: {}, tooLong: false };
  for (const [k, v] of Object.entries(body)) {
    if (typeof v !== 'string') continue;
    if (v.length > MAX_FIELD) form.tooLong = true;
    else form.fields[k] = v;
  }
  return form;
}

/**
 * A page opened from another site's link: the browser sent none of the console's cookies
 * (SameSite=Strict), so the request looks signed out when the browser may well be signed in.
 * Instead of the sign-in page, a page that opens the same address again from this origin, with
 * the cookies (a plain link too, for a browser that does not follow the refresh).
 */
export function fromAnotherSite(c: Context<AppEnv>): boolean {
  return (
    c.req.method === 'GET' &&
    c.req.header('sec-fetch-site') === 'cross-site' &&
    c.req.header('sec-fetch-mode') === 'navigate' &&
    readCookie(c, 'at') === undefined &&
    readCookie(c, 'rt') === undefined
  );
}

export function openAgain(c: Context<AppEnv>): Response | Promise<Response> {
  const u = new URL(c.req.url);
  const here = `${u.pathname}${u.search}`;
  return c.html(
    <Layout title="Opening the console" refresh={here}>
      <p>
        <a href={here}>Continue to the console</a>
      </p>
    </Layout>,
  );
}

/** A page for signed-in users: session from cookies, CSRF on posts, API errors as pages. */
export function page(app: App, handler: Handler) {
  return async (c: Context<AppEnv>): Promise<Response> => {
    if (fromAnotherSite(c)) return openAgain(c);
    const api = new ApiSession(app, c);
    let form: Record<string, string> = {};
    if (c.req.method === 'POST') {
      const parsed = await readForm(c);
      if (parsed === null) return simplePage(c, 'Not a form', 'Send this as an HTML form.', 415);
      if (!csrfOk(c, parsed.fields._csrf)) {
        return simplePage(c, 'Form expired', 'This form could not be verified (it expired or came from another site). Go back, reload the page and try again.', 403);
      }
      if (parsed.tooLong) {
        return simplePage(
          c,
          'Too long',
          `A field of this form is longer than ${MAX_FIELD} characters, the longest list of names the console takes (${ALLOW_LIST_MAX} names of up to ${USER_NAME_MAX} characters). Nothing was saved: go back and shorten it.`,
          413,
        );
      }
      form = parsed.fields;
    }
    try {
      const me = await api.call<Me>('GET', '/v1/me');
      if (!me.ok) return simplePage(c, 'Error', me.problem.detail, me.problem.status);
      const csrf = csrfToken(c);
      return await handler({
        c,
        api,
        me: me.body,
        csrf,
        form,
        render: (title, current, body, status = 200) =>
          c.html(
            <Layout title={title} me={me.body} csrf={csrf} current={current}>
              {body}
            </Layout>,
            status as 200,
          ),
      });
    } catch (err) {
      if (err instanceof SignedOut) {
        const next = c.req.method === 'GET' ? `?next=${encodeURIComponent(new URL(c.req.url).pathname)}` : '';
        return c.redirect(`/console/login${next}`, 303);
      }
      throw err;
    }
  };
}

/** A page with just a title and a message (errors, refusals). */
export function simplePage(c: Context<AppEnv>, title: string, message: string, status: number): Response | Promise<Response> {
  return c.html(
    <Layout title={title}>
      <Notice kind="err">{message}</Notice>
      <p>
        <a href="/console/">Back to the console</a>
      </p>
    </Layout>,
    status as 200,
  );
}

/** Renders an API refusal inside the page it happened on, with the API's status. */
export function problemNotice(p: Problem) {
  return <Notice kind="err">{p.status === 403 ? `Not allowed: ${p.detail}` : p.detail}</Notice>;
}

/** Fixed messages for `?done=` after a successful form post (post-redirect-get); never reflected text. */
export const DONE_MESSAGES: Record<string, string> = {
  'allow-saved': 'Allow list saved.',
  'exposure-deleted': 'Exposure deleted.',
  'lease-revoked': 'Lease revoked: its connections close within seconds.',
  'user-revoked': "All of the user's active leases were revoked.",
  'target-saved': 'Egress target saved.',
  'target-deleted': 'Egress target deleted.',
  'relay-removed': 'Relay removed: it closes its connections and admits none.',
  'token-revoked': 'Service token revoked.',
  'user-created': 'User created.',
  'user-updated': 'User updated.',
  'signed-out': 'You are signed out.',
};

/**
 * The fixed message `?done=` names, or undefined. Its own keys only: `?done=constructor` read
 * Object's constructor off the prototype and showed an empty notice.
 */
export function doneMessage(c: Context<AppEnv>): string | undefined {
  const key = c.req.query('done') ?? '';
  return Object.hasOwn(DONE_MESSAGES, key) ? DONE_MESSAGES[key] : undefined;
}

export function doneNotice(c: Context<AppEnv>) {
  const msg = doneMessage(c);
  return msg ? <Notice kind="ok">{msg}</Notice> : null;
}

/**
 * One path segment of an API URL built from a console URL parameter. Anything that is not a
 * plain name or id (dots-only, slashes, escapes) becomes a name no route has, so the request
 * cannot be steered to another path.
 */
export function seg(v: string | undefined): string {
  return v && /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/.test(v) ? v : '_invalid_';
}
