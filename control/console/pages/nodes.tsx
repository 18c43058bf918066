import type { Hono } from 'hono';
import type { App, AppEnv } from '../../http/env.js';
import { CsrfField, DangerButton, Pill, Table, Theirs, when } from '../layout.js';
import { doneNotice, page, problemNotice, seg, type PageCtx } from '../page.js';
import type { Problem } from '../api-session.js';
import { SecretBox } from './secret-box.js';

interface Node {
  name: string;
  address: string;
  online: boolean;
  last_seen_at: string | null;
  active_exposures: number;
  egress_driver: 'iptables' | 'off' | null;
  native_crypto: boolean | null;
  version: string | null;
}

const PATH = '/console/nodes';

async function view(p: PageCtx, extra?: { problem?: Problem; enrolled?: { name: string; token: string; expires_at: string } }, status = 200) {
  const res = await p.api.call<{ nodes: Node[] }>('GET', '/v1/nodes');
  if (!res.ok) return p.render('Relays', PATH, problemNotice(res.problem), res.problem.status);
  const admin = p.me.role === 'admin';
  const rows = res.body.nodes.map((n) => (
    <tr>
      <th scope="row">{n.name}</th>
      <td>
        <Pill on={n.online} yes="online" no="offline" />
      </td>
      <td>
        <code>{n.address}</code>
      </td>
      <td>{when(n.last_seen_at)}</td>
      <td>{n.version === null ? '—' : <Theirs text={n.version} />}</td>
      <td>{n.native_crypto === null ? '—' : n.native_crypto ? 'yes' : 'no (slower)'}</td>
      <td>{n.egress_driver === null ? '—' : <Pill on={n.egress_driver === 'iptables'} yes="iptables" no="OFF" bad={n.egress_driver === 'off'} />}</td>
      <td>{n.active_exposures}</td>
      <td>
        {admin ? (
          <DangerButton
            action={`${PATH}/remove?name=${encodeURIComponent(n.name)}`}
            confirm={`Remove relay ${n.name}? Its credential stops working at once: it closes every connection and admits none. Its leases and unused enrollment tokens go.`}
            label="Remove"
            what={n.name}
            csrf={p.csrf}
          />
        ) : null}
      </td>
    </tr>
  ));
  const issuer = p.c.get('deps').settings.issuer;
  return p.render(
    'Relays',
    PATH,
    <>
      {extra?.problem ? problemNotice(extra.problem) : doneNotice(p.c)}
      {extra?.enrolled ? (
        <SecretBox
          id="enroll-token"
          label={`Enrollment token for ${extra.enrolled.name} (one use, until ${when(extra.enrolled.expires_at)})`}
          value={extra.enrolled.token}
          hint={`On the relay host, as root, after setup-host.sh node (docs/deploy.md, step 4): put TUNNEL_CONTROL_URL=${issuer}, TUNNEL_ADVERTISE=HOST:2222, TUNNEL_ENROLL_TOKEN=<this token> and, for a pinned certificate, TUNNEL_CA_PIN in /etc/tunnel/node.env, then systemctl enable --now tunnel-node (tunnel-node refuses to start as root itself). tunnel admin enroll-token prints that line ready to paste.`}
        />
      ) : null}
      <Table
        caption="Relay nodes"
        head={['Name', 'State', 'Address', 'Last heartbeat', 'Version', 'Native crypto', 'Egress lock', 'Exposures', '']}
        empty="No relays enrolled yet."
        rows={rows}
      />
      {admin ? (
        <>
          <h2>Enroll a relay</h2>
          <form method="post" action={`${PATH}/enroll`} class="inline">
            <CsrfField token={p.csrf} />
            <label>
              Relay name
              <input name="name" required maxlength={63} pattern="[a-z0-9][a-z0-9-]{0,62}" />
            </label>
            <button type="submit">Create enrollment token</button>
          </form>
        </>
      ) : null}
    </>,
    status,
  );
}

export function registerNodes(r: Hono<AppEnv>, app: App): void {
  r.get('/nodes', page(app, (p) => view(p)));
  r.post(
    '/nodes/enroll',
    page(app, async (p) => {
      const res = await p.api.call<{ name: string; token: string; expires_at: string }>('POST', '/v1/nodes/enrollment-tokens', {
        name: p.form.name ?? '',
      });
      if (!res.ok) return view(p, { problem: res.problem }, res.problem.status);
      p.c.header('cache-control', 'no-store');
      return view(p, { enrolled: res.body }, 201);
    }),
  );
  // The name in the query, not the path: a `:name` beside the literal `enroll` is a path Hono's
  // RegExpRouter cannot hold (the app would refuse to start; see pages/connections.tsx).
  r.post(
    '/nodes/remove',
    page(app, async (p) => {
      const res = await p.api.call('DELETE', `/v1/nodes/${seg(p.c.req.query('name'))}`);
      if (!res.ok) return view(p, { problem: res.problem }, res.problem.status);
      return p.c.redirect(`${PATH}?done=relay-removed`, 303);
    }),
  );
}
