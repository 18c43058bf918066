import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';
import { SCRIPT, STYLESHEET } from './assets.js';
import { shownText } from './shown-text.js';

export interface Me {
  id: string;
  name: string;
  role: 'admin' | 'member';
}

interface NavItem {
  href: string;
  label: string;
  admin?: boolean;
}

const NAV: NavItem[] = [
  { href: '/console/exposures', label: 'Exposures' },
  { href: '/console/connections', label: 'Connections' },
  { href: '/console/nodes', label: 'Relays' },
  { href: '/console/egress', label: 'Egress targets' },
  { href: '/console/tokens', label: 'Service tokens' },
  { href: '/console/users', label: 'Users', admin: true },
  { href: '/console/audit', label: 'Audit', admin: true },
];

export function Layout(props: { title: string; me?: Me; csrf?: string; current?: string; refresh?: string; children?: Child }) {
  const { me, csrf, current } = props;
  return (
    <>
      {raw('<!doctype html>')}
      <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · Tunnel`}</title>
        {props.refresh ? <meta http-equiv="refresh" content={`0; url=${props.refresh}`} /> : null}
        <link rel="stylesheet" href={STYLESHEET.path} />
        <script src={SCRIPT.path} defer></script>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header>
          <a class="brand" href="/console/">
            Tunnel
          </a>
          {me ? (
            <nav aria-label="Main">
              <ul>
                {NAV.filter((n) => !n.admin || me.role === 'admin').map((n) => (
                  <li>
                    <a href={n.href} aria-current={current === n.href ? 'page' : undefined}>
                      {n.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          ) : null}
          {me && csrf ? (
            <div class="who">
              <span>
                {me.name} <span class="muted-inv">({me.role})</span>
              </span>
              <form method="post" action="/console/logout">
                <CsrfField token={csrf} />
                <button type="submit">Sign out</button>
              </form>
            </div>
          ) : null}
        </header>
        <main id="main">
          <h1>{props.title}</h1>
          {props.children}
        </main>
      </body>
      </html>
    </>
  );
}

export function CsrfField(props: { token: string }) {
  return <input type="hidden" name="_csrf" value={props.token} />;
}

/** A one-button form for a destructive action: confirmed by the console script when it runs, a plain post otherwise. */
export function DangerButton(props: { action: string; confirm: string; label: string; what: string; csrf: string }) {
  return (
    <form method="post" action={props.action} data-confirm={props.confirm}>
      <CsrfField token={props.csrf} />
      <button type="submit" class="danger">
        {props.label}
        <span class="skip-caption"> {props.what}</span>
      </button>
    </form>
  );
}

export function Notice(props: { kind: 'ok' | 'err'; children?: Child }) {
  return (
    <p class={`notice ${props.kind}`} role={props.kind === 'err' ? 'alert' : 'status'}>
      {props.children}
    </p>
  );
}

export function Table(props: { caption: string; head: string[]; empty: string; rows: Child[] }) {
  return (
    <div class="table-wrap">
      <table>
        <caption class="skip-caption">{props.caption}</caption>
        <thead>
          <tr>
            {props.head.map((h) => (
              <th scope="col">{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.length > 0 ? (
            props.rows
          ) : (
            <tr>
              <td colspan={props.head.length} class="muted">
                {props.empty}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

/**
 * Text someone else chose (a relay's version, reasons and addresses, a device's name): its
 * invisible characters shown (shown-text.ts) and the whole isolated (<bdi>), so that neither
 * bidi controls nor ordinary right-to-left letters in it can move the page's words around it.
 */
export function Theirs(props: { text: string }) {
  return <bdi>{shownText(props.text)}</bdi>;
}

export function Pill(props: { on: boolean; yes: string; no: string; bad?: boolean }) {
  return <span class={`pill ${props.on ? 'on' : props.bad ? 'bad' : 'off'}`}>{props.on ? props.yes : props.no}</span>;
}

/** `2026-12-01 11:22:50 UTC` (server-rendered, so no locale guessing). */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A region that the console script re-fetches every `everyMs` (the page works without it). */
export function Live(props: { id: string; everyMs: number; children?: Child }) {
  return (
    <div id={props.id} data-live={String(props.everyMs)} aria-live="polite">
      {props.children}
    </div>
  );
}
