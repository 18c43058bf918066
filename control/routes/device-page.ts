import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { jwtVerify, SignJWT, createLocalJWKSet } from 'jose';
import type { Context } from 'hono';
import type { App, AppEnv } from '../http/env.js';
import { clientAddress, clientSource } from '../http/client-address.js';
import { sourceKey } from '../../shared/source-key.js';
import { limitBody } from '../http/request-guards.js';
import { AppError } from '../lib/errors.js';
import { unixSeconds } from '../../shared/clock.js';
import { audit } from '../services/audit.js';
import { buildJwks } from '../ca/lease-issuer.js';
import { checkPassword } from '../auth/password-login.js';
import { decideDeviceCode, findPendingByUserCode, normalizeUserCode } from '../auth/device-codes.js';
import { shownText } from '../console/shown-text.js';

/**
 * The server-rendered approval page of the device flow (RFC 8628 §3.3): sign in, see the code
 * and the client asking, approve or deny. The approval form carries a short-lived signed ticket
 * bound to the user and the code, which doubles as its CSRF token, and to the user's generation
 * (users.generation): a disable voids it, as it ends the user's sessions, also once they are
 * enabled again within its life.
 */
const TICKET_TYP = 'device-approval+jwt';
const TICKET_TTL = 300;
const SIGN_IN_FAILED = 'Wrong user name, password or code. Check the code your terminal shows and try again.';

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  // A page that opened this one (a link sent to the victim, say) keeps no handle on it: it cannot
  // navigate it to a look-alike once the user has signed in, nor watch it.
  'cross-origin-opener-policy': 'same-origin',
  'cache-control': 'no-store',
};

function page(c: Context<AppEnv>, title: string, body: HtmlEscapedString | Promise<HtmlEscapedString>, status: 200 | 400 | 401 | 429 = 200) {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
  return c.html(
    html`<!doctype html>
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>${title} · Tunnel</title>
          <style>
            body { font: 16px system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; color: #222; }
            label { display: block; margin: 0.8rem 0 0.2rem; } input { width: 100%; padding: 0.5rem; box-sizing: border-box; }
            button { margin-top: 1rem; padding: 0.6rem 1.2rem; margin-right: 0.5rem; } .code { font: 2rem monospace; letter-spacing: 0.2rem; }
            .err { color: #a00; } .warn { background: #fff4e5; border-left: 4px solid #e67700; padding: 0.5rem 0.8rem; }
            dt { font-weight: bold; margin-top: 0.5rem; } dd { margin-left: 0; } .unverified { color: #a00; font-size: 0.9rem; }
          </style>
        </head>
        <body>
          <h1>${title}</h1>
          ${body}
        </body>
      </html>`,
    status,
  );
}

function signInForm(userCode: string, error?: string) {
  return html`${error ? html`<p class="err" role="alert">${error}</p>` : ''}
    <form method="post" action="/device">
      <label for="user_code">Code shown by <code>tunnel login</code></label>
      <input id="user_code" name="user_code" value="${userCode}" autocomplete="off" required maxlength="16" />
      <label for="username">User name</label>
      <input id="username" name="username" autocomplete="username" required maxlength="64" />
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024" />
      <button type="submit">Sign in</button>
    </form>`;
}

async function formField(c: Context<AppEnv>, name: string, max: number): Promise<string> {
  let body: Record<string, unknown>;
  try {
    body = await c.req.parseBody();
  } catch (cause) {
    throw new AppError('BAD_REQUEST', 'send the form as application/x-www-form-urlencoded', { cause });
  }
  const v = body[name];
  return typeof v === 'string' ? v.slice(0, max) : '';
}

function formExpired(c: Context<AppEnv>) {
  return page(c, 'Sign in a device', signInForm('', 'This approval form expired. Sign in again.'), 400);
}

export function registerDevicePage(app: App): void {
  app.use('/device', limitBody(16 * 1024));

  app.get('/device', (c) => page(c, 'Sign in a device', signInForm(c.req.query('user_code')?.slice(0, 16) ?? '')));

  app.post('/device', async (c) => {
    const deps = c.get('deps');
    const now = deps.clock.now();
    const userCode = normalizeUserCode(await formField(c, 'user_code', 16));
    const username = await formField(c, 'username', 64);
    const password = await formField(c, 'password', 1024);
    let user: Awaited<ReturnType<typeof checkPassword>>;
    try {
      user = await checkPassword(deps, { source: clientSource(c), username, password, method: 'device-page' });
    } catch (err) {
      if (err instanceof AppError && err.code === 'RATE_LIMITED') {
        return page(c, 'Sign in a device', signInForm(userCode, 'Too many attempts. Wait a minute and try again.'), 429);
      }
      throw err;
    }
    // Looked up whatever the password check said, and one answer for every failure: this form
    // must not tell a right password with a wrong code from a wrong password (finding 4).
    const pending = await findPendingByUserCode(deps, userCode);
    if (!user || !pending) {
      return page(c, 'Sign in a device', signInForm(userCode, SIGN_IN_FAILED), 401);
    }
    // What the requester chose (its name) is shown as its claim only; what the server saw (where
    // and when the sign-in started) is shown as fact, and a sign-in started from another network
    // than this browser's must be confirmed as expected before it can be approved: the phishing
    // this page invites is someone else's `tunnel login` (or any device-flow client calling itself
    // "Tunnel CLI") whose link is sent to the victim. The name is isolated (<bdi>) and its invisible
    // characters shown, so it cannot turn around or hide the words after it.
    const here = clientAddress(c);
    const from = pending.requesterAddress;
    const elsewhere = from === null || sourceKey(from) !== sourceKey(here);
    const key = await deps.keys.signing('sig');
    const ticket = await new SignJWT({ ucode: pending.userCode, elsewhere, gen: user.generation })
      .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: TICKET_TYP })
      .setIssuer(deps.settings.issuer)
      .setAudience(`${deps.settings.issuer}/device`)
      .setSubject(user.id)
      .setIssuedAt(unixSeconds(now))
      .setExpirationTime(unixSeconds(now) + TICKET_TTL)
      .sign(key.privateKey);
    const minutes = Math.max(0, Math.floor((now.getTime() - pending.createdAt.getTime()) / 60_000));
    return page(
      c,
      'Approve this sign-in?',
      html`<p>Signed in as <strong>${user.name}</strong>.</p>
        <p>A device asks to sign in as you with the code</p>
        <p class="code">${pending.userCode}</p>
        <dl>
          <dt>Started from</dt>
          <dd id="requester">${from ?? 'an unknown address'}${elsewhere ? html` (<strong>not</strong> the network of this browser, ${here})` : ' (the network of this browser)'}</dd>
          <dt>Started</dt>
          <dd>${minutes === 0 ? 'less than a minute ago' : minutes === 1 ? '1 minute ago' : `${minutes} minutes ago`}</dd>
          ${pending.clientName
            ? html`<dt>Calls itself</dt>
                <dd>“<bdi>${shownText(pending.clientName)}</bdi>” <span class="unverified">(its own claim, not verified: any program can give itself any name)</span></dd>`
            : ''}
        </dl>
        <p class="warn">Approve only if you ran <code>tunnel login</code> yourself just now and it shows this code. If someone sent
          you this link or code, or asked you to approve it, choose Deny: approving gives whoever started it your account.</p>
        ${elsewhere
          ? html`<p class="warn" role="alert"><strong>This sign-in was started from another network than the one this browser is on.</strong>
              That is expected only if you ran <code>tunnel login</code> on another machine (a server you are logged in to, say).</p>`
          : ''}
        <form method="post" action="/device/decision">
          <input type="hidden" name="ticket" value="${ticket}" />
          ${elsewhere
            ? html`<label><input type="checkbox" name="confirm_elsewhere" value="yes" required style="width:auto" /> I started this sign-in myself, on
                  another machine</label>`
            : ''}
          <button type="submit" name="decision" value="approve">Approve</button>
          <button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
        </form>`,
    );
  });

  app.post('/device/decision', async (c) => {
    const deps = c.get('deps');
    const ticket = await formField(c, 'ticket', 4096);
    const decision = await formField(c, 'decision', 16);
    if (decision !== 'approve' && decision !== 'deny') {
      return page(c, 'Sign in a device', html`<p class="err">Choose approve or deny.</p>`, 400);
    }
    let claims: { sub?: string; ucode?: unknown; elsewhere?: unknown; gen?: unknown };
    try {
      const jwks = createLocalJWKSet(buildJwks(await deps.keys.published()));
      ({ payload: claims } = await jwtVerify(ticket, jwks, {
        algorithms: ['EdDSA'],
        issuer: deps.settings.issuer,
        audience: `${deps.settings.issuer}/device`,
        typ: TICKET_TYP,
        currentDate: deps.clock.now(),
      }));
    } catch {
      return formExpired(c);
    }
    if (typeof claims.sub !== 'string' || typeof claims.ucode !== 'string') throw new AppError('BAD_REQUEST', 'bad ticket');
    // A ticket signed before tickets carried the generation (an upgrade within its 5 minutes) is
    // as good as expired: without it a disable since cannot be told.
    if (typeof claims.gen !== 'number' || !Number.isSafeInteger(claims.gen)) return formExpired(c);
    const approve = decision === 'approve';
    // Started from another network: approving needs the box that says so ticked (the form asks; a
    // form sent without it, by a script or an old page, is refused here too).
    if (approve && claims.elsewhere !== false && (await formField(c, 'confirm_elsewhere', 8)) !== 'yes') {
      return page(
        c,
        'Sign in a device',
        html`<p class="err">This sign-in was started from another network: tick the box that says you started it yourself, or deny it.
            Sign in again to see it.</p>`,
        400,
      );
    }
    const done = await decideDeviceCode(deps, claims.ucode, { id: claims.sub, generation: claims.gen }, approve);
    // The user was disabled since the sign-in that loaded the form (or is now): it is void.
    if (done === 'signed_out') return formExpired(c);
    if (done === 'not_pending') return page(c, 'Sign in a device', html`<p class="err">That code is no longer waiting for approval.</p>`, 400);
    await audit(deps.db, deps.clock.now(), {
      type: approve ? 'auth.device_approved' : 'auth.device_denied',
      actor: claims.sub,
      subject: claims.ucode,
      data: { approver_address: clientAddress(c), elsewhere: claims.elsewhere !== false },
    });
    return page(
      c,
      approve ? 'Device approved' : 'Sign-in denied',
      approve ? html`<p>You can close this page and return to your terminal.</p>` : html`<p>The device was not signed in.</p>`,
    );
  });
}
