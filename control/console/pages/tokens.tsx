import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Pill, Table, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';
import { nameList } from './exposures.js';
import { SecretBox } from './secret-box.js';

interface ServiceToken {
  id: string;
  name: string;
  user: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  revoked: boolean;
}

const PATH = '/console/tokens';

async function view(p: PageCtx, extra?: { problem?: Problem; created?: ServiceToken & { token: string } }, status = 200) {
  const res = await p.api.call<{ service_tokens: ServiceToken[] }>('GET', '/v1/service-tokens');
  if (!res.ok) return p.render('Service tokens', PATH, problemNotice(res.problem), res.problem.status);
  const rows = res.body.service_tokens.map((t) => (
    <tr>
      <th scope="row">{t.name}</th>
      <td>{t.user}</td>
      <td>
        {t.scopes.map((s) => (
          <code>{s} </code>
        ))}
      </td>
      <td>{when(t.created_at)}</td>
      <td>{t.expires_at ? when(t.expires_at) : 'never'}</td>
      <td>
        <Pill on={!t.revoked} yes="active" no="revoked" />
      </td>
      <td>
        {!t.revoked ? (
          <DangerButton action={`${PATH}/${t.id}/revoke`} confirm={`Revoke service token ${t.name}?`} label="Revoke" what={t.name} csrf={p.csrf} />
        ) : null}
      </td>
    </tr>
  ));
  return p.render(
    'Service tokens',
    PATH,
    <>
      {extra?.problem ? problemNotice(extra.problem) : doneNotice(p.c)}
      {extra?.created ? (
        <SecretBox
          id="new-token"
          label={`Service token ${extra.created.name}`}
          value={extra.created.token}
          hint="On the headless host: save it to a file readable only by the service's user, then tunnel login --token-file FILE."
        />
      ) : null}
      <Table caption="Service tokens" head={['Name', 'Acts as', 'Scopes', 'Created', 'Expires', 'State', '']} empty="No service tokens." rows={rows} />
      <h2>Create a service token</h2>
      <form method="post" action={PATH} class="stack">
        <CsrfField token={p.csrf} />
        <label for="st-name">Name</label>
        <input id="st-name" name="name" required maxlength={64} pattern="[a-z0-9][a-z0-9._\-]{0,63}" />
        {p.me.role === 'admin' ? (
          <>
            <label for="st-user">Acts as user (empty: you)</label>
            <input id="st-user" name="user" maxlength={64} />
          </>
        ) : null}
        <label for="st-scopes">Scopes</label>
        <input id="st-scopes" name="scopes" required aria-describedby="st-scopes-hint" placeholder="expose:hostx-ssh" />
        <p class="hint" id="st-scopes-hint">
          Separated by spaces or commas: <code>expose:NAME</code>, <code>open:NAME</code>, <code>egress:TARGET</code> (NAME may be{' '}
          <code>*</code>).
        </p>
        <label for="st-ttl">Valid for days (empty: no expiry)</label>
        <input id="st-ttl" name="ttl_days" inputmode="numeric" pattern="[0-9]{0,3}" />
        <p>
          <button type="submit">Create token</button>
        </p>
      </form>
    </>,
    status,
  );
}

export function registerTokens(r: Hono<AppEnv>, app: App): void {
  r.get('/tokens', page(app, (p) => view(p)));
  r.post(
    '/tokens',
    page(app, async (p) => {
      const days = p.form.ttl_days ? Number(p.form.ttl_days) : undefined;
      const res = await p.api.call<ServiceToken & { token: string }>('POST', '/v1/service-tokens', {
        name: p.form.name ?? '',
        ...(p.form.user ? { user: p.form.user } : {}),
        scopes: nameList(p.form.scopes),
        ...(days !== undefined ? { ttl_seconds: Number.isInteger(days) ? days * 86400 : -1 } : {}),
      });
      if (!res.ok) return view(p, { problem: res.problem }, res.problem.status);
      p.c.header('cache-control', 'no-store');
      return view(p, { created: res.body }, 201);
    }),
  );
  r.post(
    '/tokens/:id/revoke',
    page(app, async (p) => {
      const res = await p.api.call('DELETE', `/v1/service-tokens/${seg(p.c.req.param('id'))}`);
      if (!res.ok) return view(p, { problem: res.problem }, res.problem.status);
      return p.c.redirect(`${PATH}?done=token-revoked`, 303);
    }),
  );
}
