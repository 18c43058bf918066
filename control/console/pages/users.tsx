import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, Pill, Table, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';

interface User {
  name: string;
  role: 'admin' | 'member';
  disabled: boolean;
  created_at: string;
}

const PATH = '/console/users';

async function view(p: PageCtx, problem?: Problem, status = 200) {
  const res = await p.api.call<{ users: User[] }>('GET', '/v1/users');
  if (!res.ok) return p.render('Users', PATH, problemNotice(res.problem), res.problem.status);
  const rows = res.body.users.map((u) => {
    const self = u.name === p.me.name;
    return (
      <tr>
        <th scope="row">{u.name}</th>
        <td>{u.role}</td>
        <td>
          <Pill on={!u.disabled} yes="enabled" no="disabled" />
        </td>
        <td>{when(u.created_at)}</td>
        <td>
          {self ? (
            <span class="muted">you</span>
          ) : (
            <>
              <form method="post" action={`${PATH}/${u.name}/update`}>
                <CsrfField token={p.csrf} />
                <input type="hidden" name="disabled" value={u.disabled ? 'false' : 'true'} />
                <button type="submit" class={u.disabled ? 'plain' : 'danger'}>
                  {u.disabled ? 'Enable' : 'Disable'}
                  <span class="skip-caption"> {u.name}</span>
                </button>
              </form>{' '}
              <form method="post" action={`${PATH}/${u.name}/update`}>
                <CsrfField token={p.csrf} />
                <input type="hidden" name="role" value={u.role === 'admin' ? 'member' : 'admin'} />
                <button type="submit" class="plain">
                  {u.role === 'admin' ? 'Make member' : 'Make admin'}
                  <span class="skip-caption"> {u.name}</span>
                </button>
              </form>
            </>
          )}
        </td>
      </tr>
    );
  });
  return p.render(
    'Users',
    PATH,
    <>
      {problem ? problemNotice(problem) : doneNotice(p.c)}
      <Table caption="Users" head={['Name', 'Role', 'State', 'Created', '']} empty="No users." rows={rows} />
      <h2>Create a user</h2>
      <form method="post" action={PATH} class="stack">
        <CsrfField token={p.csrf} />
        <label for="u-name">Name</label>
        <input id="u-name" name="name" required maxlength={64} pattern="[a-z][a-z0-9._\-]{0,63}" />
        <label for="u-role">Role</label>
        <select id="u-role" name="role">
          <option value="member">member</option>
          <option value="admin">admin</option>
        </select>
        <label for="u-password">Password (at least 12 characters; empty: device login only after an admin sets one)</label>
        <input id="u-password" name="password" type="password" autocomplete="new-password" minlength={12} maxlength={1024} />
        <p>
          <button type="submit">Create user</button>
        </p>
      </form>
    </>,
    status,
  );
}

export function registerUsers(r: Hono<AppEnv>, app: App): void {
  r.get('/users', page(app, (p) => view(p)));
  r.post(
    '/users',
    page(app, async (p) => {
      const res = await p.api.call('POST', '/v1/users', {
        name: p.form.name ?? '',
        role: p.form.role === 'admin' ? 'admin' : 'member',
        ...(p.form.password ? { password: p.form.password } : {}),
      });
      if (!res.ok) return view(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=user-created`, 303);
    }),
  );
  r.post(
    '/users/:name/update',
    page(app, async (p) => {
      const patch: Record<string, unknown> = {};
      if (p.form.disabled === 'true' || p.form.disabled === 'false') patch.disabled = p.form.disabled === 'true';
      if (p.form.role === 'admin' || p.form.role === 'member') patch.role = p.form.role;
      const res = await p.api.call('PATCH', `/v1/users/${seg(p.c.req.param('name'))}`, patch);
      if (!res.ok) return view(p, res.problem, res.problem.status);
      return p.c.redirect(`${PATH}?done=user-updated`, 303);
    }),
  );
}
