import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { Table, Theirs, when } from '../layout.js';
import { page, problemNotice, type PageCtx } from '../page.js';
import { detailsPieces, shownDetails } from '../audit-details.js';

interface AuditEvent {
  id: string;
  at: string;
  type: string;
  actor: string | null;
  subject: string | null;
  data: Record<string, unknown>;
}

const PATH = '/console/audit';
const PAGE_SIZE = 50;

/** Query fields the page passes on to `GET /v1/audit` (the API validates them). */
const FIELDS = ['actor', 'type', 'subject', 'since', 'until'] as const;

/** `datetime-local` input (no zone, taken as UTC) or RFC 3339 → RFC 3339; junk → empty (the API rejects junk anyway). */
function toIso(v: string): string {
  if (!v) return '';
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(v) ? v : `${v}Z`);
  return Number.isNaN(d.getTime()) ? v : d.toISOString();
}

/** An event's data: JSON, cut at its limit (with …), each of its strings isolated (<bdi>). */
function Details(props: { data: unknown }) {
  const { text, cut } = shownDetails(props.data);
  return (
    <code>
      {detailsPieces(text).map((piece) => (piece.string ? <bdi>{piece.text}</bdi> : piece.text))}
      {cut ? '…' : null}
    </code>
  );
}

async function view(p: PageCtx): Promise<Response> {
  const q: Record<string, string> = {};
  for (const f of FIELDS) q[f] = (p.c.req.query(f) ?? '').trim().slice(0, 128);
  const before = p.c.req.query('before') ?? '';

  // Actor names → ids (users and relays), so people search by name and read names.
  const [users, nodes] = await Promise.all([
    p.api.call<{ users: { id: string; name: string }[] }>('GET', '/v1/users'),
    p.api.call<{ nodes: { id: string; name: string }[] }>('GET', '/v1/nodes'),
  ]);
  if (!users.ok) return p.render('Audit log', PATH, problemNotice(users.problem), users.problem.status);
  const names = new Map<string, string>();
  for (const u of users.body.users) names.set(u.id, u.name);
  if (nodes.ok) for (const n of nodes.body.nodes) names.set(n.id, `relay ${n.name}`);
  const idOf = new Map([...names].map(([id, name]) => [name.replace(/^relay /, ''), id]));

  const params = new URLSearchParams({ order: 'desc', limit: String(PAGE_SIZE) });
  if (before) params.set('before', before);
  if (q.actor) params.set('actor', idOf.get(q.actor) ?? q.actor);
  if (q.type) params.set('type', q.type);
  if (q.subject) params.set('subject', q.subject);
  if (q.since) params.set('since', toIso(q.since));
  if (q.until) params.set('until', toIso(q.until));
  const res = await p.api.call<{ events: AuditEvent[]; next_cursor: string | null }>('GET', `/v1/audit?${params}`);

  const rows = res.ok
    ? res.body.events.map((e) => (
        <tr>
          <td>{when(e.at)}</td>
          <td>
            <code>{e.type}</code>
          </td>
          <td>{e.actor ? (names.get(e.actor) ?? <Theirs text={e.actor} />) : '—'}</td>
          <td>{e.subject ? <code>{names.get(e.subject) ?? <Theirs text={e.subject} />}</code> : '—'}</td>
          <td>
            <Details data={e.data} />
          </td>
        </tr>
      ))
    : [];
  const keep = new URLSearchParams();
  for (const f of FIELDS) if (q[f]) keep.set(f, q[f]);
  const older = res.ok && res.body.next_cursor ? `${PATH}?${new URLSearchParams([...keep, ['before', res.body.next_cursor]])}` : null;

  return p.render(
    'Audit log',
    PATH,
    <>
      {res.ok ? null : problemNotice(res.problem)}
      <form method="get" action={PATH} class="inline" role="search">
        <label>
          Actor
          <input name="actor" value={q.actor} size={12} />
        </label>
        <label>
          Action
          <input name="type" value={q.type} size={16} placeholder="lease.revoked or lease." />
        </label>
        <label>
          Target
          <input name="subject" value={q.subject} size={16} />
        </label>
        <label>
          From (UTC)
          <input name="since" type="datetime-local" value={q.since} />
        </label>
        <label>
          To (UTC)
          <input name="until" type="datetime-local" value={q.until} />
        </label>
        <button type="submit" class="plain">
          Search
        </button>
      </form>
      <Table caption="Audit events, newest first" head={['When', 'Action', 'Actor', 'Target', 'Details']} empty="No events match." rows={rows} />
      <nav class="pager" aria-label="Pages">
        {before ? <a href={`${PATH}?${keep}`}>Newest</a> : null}
        {older ? <a href={older}>Older events</a> : null}
      </nav>
    </>,
    res.ok ? 200 : res.problem.status,
  );
}

export function registerAudit(r: Hono<AppEnv>, app: App): void {
  r.get('/audit', page(app, (p) => view(p)));
}
