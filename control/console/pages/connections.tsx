import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Live, Pill, Table, Theirs, bytes, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';

type Kind = 'expose' | 'open' | 'egress';
type Target = { host: string; port: number };

interface Lease {
  id: string;
  kind: Kind;
  user: string;
  node: string;
  exposure: string | null;
  port: number | null;
  targets: Target[] | null;
  created_at: string;
  expires_at: string;
}

interface Connection {
  node: string;
  session_id: string;
  lease_id: string | null;
  kind: Kind | null;
  user: string | null;
  exposure: string | null;
  targets: Target[] | null;
  remote: string | null;
  opened_at: string;
  closed_at: string | null;
  bytes_in: number | null;
  bytes_out: number | null;
  live: boolean;
}

const PATH = '/console/connections';
/**
 * Revoking all of a user's leases posts here, not under PATH: a literal beside the `:id` of
 * `/connections/:id/revoke` is a path Hono's RegExpRouter cannot hold, and that one route made
 * the whole app fall back to its slower trie router on every request (issue 11).
 */
const REVOKE_USER = '/revoke-user';
const KINDS = ['expose', 'open', 'egress'] as const;
const LIVE_ID = 'live-tables';

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

function matches(f: Filters, x: { user: string | null; exposure: string | null; node: string; kind: Kind | null }): boolean {
  return (!f.user || x.user === f.user) && (!f.exposure || x.exposure === f.exposure) && (!f.node || x.node === f.node) && (!f.kind || x.kind === f.kind);
}

async function activeLeases(p: PageCtx) {
  const all = p.me.role === 'admin' ? '&all=true' : '';
  return p.api.call<{ leases: Lease[] }>('GET', `/v1/leases?active=true&limit=500${all}`);
}

function what(x: { kind: Kind | null; exposure: string | null; targets: Target[] | null }): string {
  if (x.kind === 'egress') return (x.targets ?? []).map((t) => `${t.host}:${t.port}`).join(', ') || '—';
  return x.exposure ?? '—';
}

/** The cells a connection row starts with, in "Connected now" and "Recently closed" alike. */
function ConnectionCells({ c }: { c: Connection }) {
  return (
    <>
      <td>{c.user ?? '—'}</td>
      <td>{c.kind ?? '—'}</td>
      <td>{what(c)}</td>
      <td>{c.node}</td>
      <td>
        <code>{c.remote === null ? '—' : <Theirs text={c.remote} />}</code>
      </td>
      <td>{when(c.opened_at)}</td>
    </>
  );
}

function RevokeButton(props: { p: PageCtx; leaseId: string }) {
  return (
    <DangerButton action={`${PATH}/${props.leaseId}/revoke`} confirm={`Revoke ${props.leaseId}? Its connections close.`} label="Revoke" what={props.leaseId} csrf={props.p.csrf} />
  );
}

function Tables(props: { p: PageCtx; f: Filters; leases: Lease[]; conns: Connection[] }) {
  const { p, f } = props;
  const conns = props.conns.filter((c) => matches(f, c));
  const now = conns.filter((c) => c.live);
  const closed = conns.filter((c) => c.closed_at !== null).slice(0, 50);
  return (
    <>
      <h2>Connected now</h2>
      <Table
        caption="Connected now"
        head={['User', 'Kind', 'To', 'Relay', 'From', 'Since', 'Lease', '']}
        empty="Nobody matching is connected."
        rows={now.map((c) => (
          <tr>
            <ConnectionCells c={c} />
            <td>
              <code>{c.lease_id ?? '—'}</code>
            </td>
            <td>
              {/* An exposure's owner sees others' connections to it but revokes only their own leases. */}
              {c.lease_id && (p.me.role === 'admin' || c.user === p.me.name) ? <RevokeButton p={p} leaseId={c.lease_id} /> : null}
            </td>
          </tr>
        ))}
      />
      <h2>Active leases</h2>
      <Table
        caption="Active leases"
        head={['Lease', 'Kind', 'User', 'To', 'Relay', 'Connected', 'Issued', 'Expires', '']}
        empty="No active leases match."
        rows={props.leases
          .filter((l) => matches(f, l))
          .map((l) => (
            <tr>
              <td>
                <code>{l.id}</code>
              </td>
              <td>{l.kind}</td>
              <td>{l.user}</td>
              <td>{what(l)}</td>
              <td>{l.node}</td>
              <td>
                <Pill on={props.conns.some((c) => c.live && c.lease_id === l.id)} yes="yes" no="no" />
              </td>
              <td>{when(l.created_at)}</td>
              <td>{when(l.expires_at)}</td>
              <td>
                <RevokeButton p={p} leaseId={l.id} />
              </td>
            </tr>
          ))}
      />
      <h2>Recently closed</h2>
      <Table
        caption="Recently closed connections"
        head={['User', 'Kind', 'To', 'Relay', 'From', 'Opened', 'Closed', 'In', 'Out']}
        empty="No closed connections match."
        rows={closed.map((c) => (
          <tr>
            <ConnectionCells c={c} />
            <td>{when(c.closed_at)}</td>
            <td>{bytes(c.bytes_in)}</td>
            <td>{bytes(c.bytes_out)}</td>
          </tr>
        ))}
      />
    </>
  );
}

async function view(p: PageCtx, problem?: Problem, status = 200): Promise<Response> {
  const f = filters(p);
  const [leases, conns] = await Promise.all([activeLeases(p), p.api.call<{ connections: Connection[] }>('GET', '/v1/connections?state=all&limit=500')]);
  if (!leases.ok) return p.render('Connections and leases', PATH, problemNotice(leases.problem), leases.problem.status);
  if (!conns.ok) return p.render('Connections and leases', PATH, problemNotice(conns.problem), conns.problem.status);
  const tables = <Tables p={p} f={f} leases={leases.body.leases} conns={conns.body.connections} />;
  if (p.c.req.header('x-console-fragment') === LIVE_ID) return p.c.html(tables);
  const users = [...new Set(leases.body.leases.map((l) => l.user))].sort();
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
      <Live id={LIVE_ID} everyMs={5000}>
        {tables}
      </Live>
      {p.me.role === 'admin' && users.length > 0 ? (
        <>
          <h2>Revoke all of a user's leases</h2>
          <form method="post" action={`/console${REVOKE_USER}`} class="inline" data-confirm="Revoke every active lease of this user?">
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
    REVOKE_USER,
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
