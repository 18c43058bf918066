import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Pill, Table, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
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
                <input name="allow" value={e.allow.join(', ')} size={24} aria-describedby="allow-hint" />
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

/**
 * The form sends the whole allow list, as it was when the page was loaded (`was`) with the
 * user's edit: saved over a list that changed since (someone taken off it by an admin in another
 * tab, a minute or a day ago), it put them back, and the removal was undone without a word. So
 * the list is read again and, unless it is still the one the form showed, nothing is saved: the
 * page shows the list as it is now, to edit again. A form without `was` (a page from before it
 * was sent) is saved as it is.
 */
async function changedSinceShown(p: PageCtx, path: string): Promise<Problem | undefined> {
  if (p.form.was === undefined) return undefined;
  const cur = await p.api.call<Exposure>('GET', path);
  if (!cur.ok) return cur.problem;
  const shown = [...new Set(nameList(p.form.was))].sort();
  const now = [...new Set(cur.body.allow)].sort();
  if (shown.length === now.length && shown.every((n, i) => n === now[i])) return undefined;
  return {
    status: 409,
    code: 'CONFLICT',
    detail: `the allow list of ${cur.body.name} changed since this page was loaded (now: ${now.join(', ') || 'nobody'}); nothing was saved: edit it again`,
  };
}

export function registerExposures(r: Hono<AppEnv>, app: App): void {
  r.get('/exposures', page(app, (p) => list(p)));

  r.post(
    '/exposures/:name/allow',
    page(app, async (p) => {
      const path = `/v1/exposures/${seg(p.c.req.param('name'))}`;
      const stale = await changedSinceShown(p, path);
      if (stale) return list(p, stale, stale.status);
      const res = await p.api.call('PUT', path, { allow: nameList(p.form.allow) });
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
