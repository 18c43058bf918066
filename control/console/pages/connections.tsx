import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, Table, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';

interface Lease {
  id: string;
  kind: 'expose' | 'open' | 'egress';
  user: string;
  node: string;
  exposure: string | null;
  port: number | null;
  targets: { host: string; port: number }[] | null;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}

const PATH = '/console/connections';
const KINDS = ['expose', 'open', 'egress'] as const;

interface Filters {
  user: string;
  exposure: string;
  node: string;
  kind: string;
}

function filters(p: PageCtx): Filters {
  const q = (k: string) => (p.c.req.query(k) ?? '').slice(0, 64).trim();
  const kind = q('kind');
  return { user: q('user'), exposure: q('exposure'), node: q('node'), kind: (KINDS as readonly string[]).includes(kind) ? kind : '' };
}

async function activeLeases(p: PageCtx) {
  const all = p.me.role === 'admin' ? '&all=true' : '';
  return p.api.call<{ leases: Lease[] }>('GET', `/v1/leases?active=true&limit=500${all}`);
}

function what(l: Lease): string {
  if (l.kind === 'egress') return (l.targets ?? []).map((t) => `${t.host}:${t.port}`).join(', ') || '—';
  return l.exposure ? `${l.exposure}${l.port ? `:${l.port}` : ''}` : '—';
}

function rowsFor(p: PageCtx, leases: Lease[], f: Filters) {
  return leases
    .filter((l) => (!f.user || l.user === f.user) && (!f.exposure || l.exposure === f.exposure) && (!f.node || l.node === f.node) && (!f.kind || l.kind === f.kind))
    .map((l) => (
      <tr>
        <td>
          <code>{l.id}</code>
        </td>
        <td>{l.kind}</td>
        <td>{l.user}</td>
        <td>{what(l)}</td>
        <td>{l.node}</td>
        <td>{when(l.created_at)}</td>
        <td>{when(l.expires_at)}</td>
        <td>
          <form method="post" action={`${PATH}/${l.id}/revoke`} data-confirm={`Revoke ${l.id}? Its connections close.`}>
            <CsrfField token={p.csrf} />
            <button type="submit" class="danger">
              Revoke<span class="skip-caption"> {l.id}</span>
            </button>
          </form>
        </td>
      </tr>
    ));
}

async function view(p: PageCtx, problem?: Problem, status = 200): Promise<Response> {
  const f = filters(p);
  const res = await activeLeases(p);
  if (!res.ok) return p.render('Connections and leases', PATH, problemNotice(res.problem), res.problem.status);
  const rows = rowsFor(p, res.body.leases, f);
  if (p.c.req.header('x-console-fragment') === 'lease-rows') return p.c.html(<>{rows.length ? rows : <tr><td colspan={8} class="muted">No active leases match.</td></tr>}</>);
  const users = [...new Set(res.body.leases.map((l) => l.user))].sort();
  return p.render(
    'Connections and leases',
    PATH,
    <>
      {problem ? problemNotice(problem) : doneNotice(p.c)}
      <form method="get" action={PATH} class="inline" role="search">
        <label>
          User
          <input name="user" value={f.user} size={12} />
        </label>
        <label>
          Exposure
          <input name="exposure" value={f.exposure} size={12} />
        </label>
        <label>
          Relay
          <input name="node" value={f.node} size={10} />
        </label>
        <label>
          Kind
          <select name="kind">
            <option value="">any</option>
            {KINDS.map((k) => (
              <option value={k} selected={f.kind === k}>
                {k}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="plain">
          Filter
        </button>
      </form>
      <Table
        caption="Active leases"
        head={['Lease', 'Kind', 'User', 'To', 'Relay', 'Since', 'Expires', '']}
        empty="No active leases match."
        rows={rows}
        id="lease-rows"
        live={5000}
      />
      {p.me.role === 'admin' && users.length > 0 ? (
        <>
          <h2>Revoke all of a user's leases</h2>
          <form method="post" action={`${PATH}/revoke-user`} class="inline" data-confirm="Revoke every active lease of this user?">
            <CsrfField token={p.csrf} />
            <label>
              User
              <select name="user">
                {users.map((u) => (
                  <option value={u}>{u}</option>
                ))}
              </select>
            </label>
            <button type="submit" class="danger">
              Revoke all
            </button>
          </form>
        </>
      ) : null}
    </>,
    status,
  );
}

export function registerConnections(r: Hono<AppEnv>, app: App): void {
  r.get('/connections', page(app, (p) => view(p)));

  r.post(
    '/connections/:id/revoke',
    page(app, async (p) => {
      const res = await p.api.call('DELETE', `/v1/leases/${seg(p.c.req.param('id'))}`);
      if (!res.ok) return view(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=lease-revoked`, 303);
    }),
  );

  r.post(
    '/connections/revoke-user',
    page(app, async (p) => {
      const res = await activeLeases(p);
      if (!res.ok) return view(p, res.problem, res.problem.status);
      for (const l of res.body.leases.filter((x) => x.user === p.form.user)) {
        const d = await p.api.call('DELETE', `/v1/leases/${seg(l.id)}`);
        if (!d.ok && d.problem.status !== 404) return view(p, d.problem, d.problem.status);
      }
      return p.c.redirect(`${PATH}?done=user-revoked`, 303);
    }),
  );
}
