import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Table, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';
import { nameList } from './exposures.js';

interface Target {
  name: string;
  node: string;
  host: string;
  port: number;
  allow: string[];
  created_at: string;
}

const PATH = '/console/egress';

async function view(p: PageCtx, problem?: Problem, status = 200) {
  const res = await p.api.call<{ targets: Target[] }>('GET', '/v1/egress-targets');
  if (!res.ok) return p.render('Egress targets', PATH, problemNotice(res.problem), res.problem.status);
  const admin = p.me.role === 'admin';
  const rows = res.body.targets.map((t) => (
    <tr>
      <th scope="row">
        <code>{t.name}</code>
      </th>
      <td>{t.node}</td>
      <td>
        <code>
          {t.host}:{t.port}
        </code>
      </td>
      <td>{t.allow.join(', ') || <span class="muted">admins only</span>}</td>
      <td>{when(t.created_at)}</td>
      <td>
        {admin ? (
          <DangerButton action={`${PATH}/${t.name}/delete`} confirm={`Delete egress target ${t.name}? Leases that use it are revoked.`} label="Delete" what={t.name} csrf={p.csrf} />
        ) : null}
      </td>
    </tr>
  ));
  return p.render(
    'Egress targets',
    PATH,
    <>
      {problem ? problemNotice(problem) : doneNotice(p.c)}
      <p class="hint">Hosts on a relay's network that users may reach through that relay (and nothing else there).</p>
      <Table caption="Egress targets" head={['Name', 'Relay', 'Host and port', 'Who may use it', 'Created', '']} empty="No egress targets." rows={rows} />
      {admin ? (
        <>
          <h2>Add or change a target</h2>
          <form method="post" action={PATH} class="stack">
            <CsrfField token={p.csrf} />
            <label for="t-name">Name</label>
            <input id="t-name" name="name" required maxlength={63} pattern="[a-z0-9][a-z0-9-]{0,62}" />
            <label for="t-node">Relay</label>
            <input id="t-node" name="node" required maxlength={63} />
            <label for="t-host">Host (address or name, seen from the relay)</label>
            <input id="t-host" name="host" required maxlength={253} />
            <label for="t-port">Port</label>
            <input id="t-port" name="port" required inputmode="numeric" pattern="[0-9]{1,5}" />
            <label for="t-allow">Who may use it (user names)</label>
            <input id="t-allow" name="allow" />
            <p>
              <button type="submit">Save target</button>
            </p>
          </form>
        </>
      ) : null}
    </>,
    status,
  );
}

export function registerEgress(r: Hono<AppEnv>, app: App): void {
  r.get('/egress', page(app, (p) => view(p)));
  r.post(
    '/egress',
    page(app, async (p) => {
      const port = Number(p.form.port);
      const res = await p.api.call('PUT', `/v1/egress-targets/${seg(p.form.name)}`, {
        node: p.form.node ?? '',
        host: p.form.host ?? '',
        port: Number.isInteger(port) ? port : -1,
        allow: nameList(p.form.allow),
      });
      if (!res.ok) return view(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=target-saved`, 303);
    }),
  );
  r.post(
    '/egress/:name/delete',
    page(app, async (p) => {
      const res = await p.api.call('DELETE', `/v1/egress-targets/${seg(p.c.req.param('name'))}`);
      if (!res.ok) return view(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=target-deleted`, 303);
    }),
  );
}
