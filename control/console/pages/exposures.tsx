import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Pill, Table, when } from '../layout.js';
import { doneNotice, NAME_LIST_SEPARATOR, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';

interface Exposure {
  name: string;
  owner: string;
  allow: string[];
  node: string | null;
  pinned_node: string | null;
  online: boolean;
  port: number | null;
  created_at: string;
}

const PATH = '/console/exposures';

/** "alice, bob carol" → ["alice", "bob", "carol"] (the API validates each name). */
export function nameList(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

async function list(p: PageCtx, problem?: Problem, status = 200): Promise<Response> {
  const res = await p.api.call<{ exposures: Exposure[] }>('GET', '/v1/exposures');
  if (!res.ok) return p.render('Exposures', PATH, problemNotice(res.problem), res.problem.status);
  const rows = res.body.exposures.map((e) => {
    const mayManage = p.me.role === 'admin' || e.owner === p.me.name;
    return (
      <tr>
        <th scope="row">
          <code>{e.name}</code>
        </th>
        <td>
          <Pill on={e.online} yes="online" no="offline" />
        </td>
        <td>{e.node ?? (e.pinned_node ? `pinned: ${e.pinned_node}` : '—')}</td>
        <td>{e.port ?? '—'}</td>
        <td>{e.owner}</td>
        <td>
          {mayManage ? (
            <form method="post" action={`${PATH}/${e.name}/allow`} class="inline">
              <CsrfField token={p.csrf} />
              <input type="hidden" name="was" value={e.allow.join(',')} />
              <label>
                <span class="skip-caption">Who may open {e.name}</span>
                <input name="allow" value={e.allow.join(NAME_LIST_SEPARATOR)} size={24} aria-describedby="allow-hint" />
              </label>
              <button type="submit" class="plain">
                Save
              </button>
            </form>
          ) : (
            e.allow.join(', ') || <span class="muted">owner and admins only</span>
          )}
        </td>
        <td>{when(e.created_at)}</td>
        <td>
          {mayManage ? (
            <DangerButton action={`${PATH}/${e.name}/delete`} confirm={`Delete exposure ${e.name}? Its leases are revoked.`} label="Delete" what={e.name} csrf={p.csrf} />
          ) : null}
        </td>
      </tr>
    );
  });
  return p.render(
    'Exposures',
    PATH,
    <>
      {problem ? problemNotice(problem) : doneNotice(p.c)}
      <p class="hint" id="allow-hint">
        Who may open: user names separated by commas or spaces. The owner and admins always may. Removing someone revokes their
        leases at once.
      </p>
      <Table
        caption="Exposures"
        head={['Name', 'State', 'Relay', 'Port', 'Owner', 'Who may open', 'Created', '']}
        empty="No exposures yet. Run tunnel expose PORT --name NAME on the host that has the service."
        rows={rows}
      />
    </>,
    status,
  );
}

export function registerExposures(r: Hono<AppEnv>, app: App): void {
  r.get('/exposures', page(app, (p) => list(p)));

  r.post(
    '/exposures/:name/allow',
    page(app, async (p) => {
      // The form sends the whole list, edited from the one the page showed (`was`): saved over a
      // list that changed since (someone taken off it by an admin in another tab), it would put
      // them back. So it is an edit of that list (`expect_allow`), which the API refuses (409,
      // nothing saved) once the list is another; the page then shows it as it is now. A form
      // without `was` (a page from before it was sent) is saved as it is.
      const res = await p.api.call('PUT', `/v1/exposures/${seg(p.c.req.param('name'))}`, {
        allow: nameList(p.form.allow),
        ...(p.form.was !== undefined ? { expect_allow: nameList(p.form.was) } : {}),
      });
      if (!res.ok) return list(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=allow-saved`, 303);
    }),
  );

  r.post(
    '/exposures/:name/delete',
    page(app, async (p) => {
      const res = await p.api.call('DELETE', `/v1/exposures/${seg(p.c.req.param('name'))}`);
      if (!res.ok) return list(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=exposure-deleted`, 303);
    }),
  );
}
