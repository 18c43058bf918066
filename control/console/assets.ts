import { createHash } from 'node:crypto';

/**
 * The console's only static files: one stylesheet and one small script. Both are served from
 * this origin (the Content-Security-Policy allows nothing else) under a content-hashed path, so
 * they can be cached for a year. The script is progressive enhancement only: every page and
 * form works without it.
 */

const CSS = `
:root { --fg: #1b1f24; --muted: #4a5360; --bg: #fff; --line: #c9d1d9; --accent: #0b57d0; --bad: #a40e26; --ok: #0a6b2d; --warn-bg: #fff4ce; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .5rem; }
.skip:focus { left: .5rem; }
.skip-caption { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.muted-inv { opacity: .9; }
header { background: #102a43; color: #fff; padding: .6rem 1rem; display: flex; flex-wrap: wrap; gap: .5rem 1.2rem; align-items: center; }
header a { color: #fff; }
header .brand { font-weight: 700; text-decoration: none; margin-right: .5rem; }
header nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .2rem 1rem; margin: 0; padding: 0; }
header nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
header .who { margin-left: auto; display: flex; gap: .6rem; align-items: center; }
header .who button { background: transparent; color: #fff; border: 1px solid #fff; }
main { padding: 1rem; max-width: 72rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f0f3f6; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td form { display: inline; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; word-break: break-all; }
.muted { color: var(--muted); }
.pill { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .85rem; border: 1px solid currentColor; white-space: nowrap; }
.pill.on { color: var(--ok); } .pill.off { color: var(--muted); } .pill.bad { color: #fff; background: var(--bad); border-color: var(--bad); font-weight: 700; }
button, .button { font: inherit; padding: .35rem .8rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.danger { background: var(--bad); border-color: var(--bad); }
button.plain { background: #fff; color: var(--accent); }
form.stack { display: grid; gap: .4rem; max-width: 32rem; margin-bottom: 1rem; }
form.stack label { font-weight: 600; margin-top: .3rem; }
form.inline { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: 1rem; }
form.inline label { display: grid; gap: .2rem; font-weight: 600; }
input, select, textarea { font: inherit; padding: .35rem .5rem; border: 1px solid #6b7785; border-radius: 4px; max-width: 100%; }
.hint { color: var(--muted); font-size: .9rem; margin: 0; }
.notice { padding: .6rem .8rem; border-radius: 6px; margin: 0 0 1rem; border: 1px solid; }
.notice.ok { color: var(--ok); background: #e9f7ef; }
.notice.err { color: var(--bad); background: #fdecee; }
.secret { background: var(--warn-bg); border: 1px solid #d4a72c; padding: .8rem; border-radius: 6px; margin-bottom: 1rem; }
.secret input { width: 100%; font-family: ui-monospace, monospace; }
.pager { display: flex; gap: 1rem; margin: .8rem 0; }
@media (max-width: 40rem) {
  header .who { margin-left: 0; }
  main { padding: .6rem; }
  th, td { padding: .35rem .4rem; }
}
`;

const JS = `
// Progressive enhancement only: the pages work without this file.
(function () {
  for (const btn of document.querySelectorAll('[data-copy]')) {
    btn.hidden = false;
    btn.addEventListener('click', function () {
      const el = document.getElementById(btn.getAttribute('data-copy'));
      if (!el) return;
      navigator.clipboard.writeText(el.value).then(function () { btn.textContent = 'Copied'; }, function () { el.select(); });
    });
  }
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', function (e) { if (!window.confirm(form.getAttribute('data-confirm'))) e.preventDefault(); });
  }
  const live = document.querySelector('[data-live]');
  if (live) {
    const every = Math.max(2000, Number(live.getAttribute('data-live')) || 5000);
    const tick = function () {
      if (document.hidden) return;
      fetch(location.href, { headers: { 'x-console-fragment': live.id }, credentials: 'same-origin' })
        // Redirected: the session ended (signed out elsewhere, expired), and the answer is the sign-in
        // page, not the region: load the page again (it goes to sign-in) instead of nesting that page here.
        .then(function (r) { if (r.redirected) { location.reload(); return null; } return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { live.innerHTML = html; } })
        .catch(function () {});
    };
    setInterval(tick, every);
  }
})();
`;

function hashed(body: string, ext: string) {
  const h = createHash('sha256').update(body).digest('hex').slice(0, 12);
  return { path: `/console/assets/console.${h}.${ext}`, body };
}

export const STYLESHEET = hashed(CSS, 'css');
export const SCRIPT = hashed(JS, 'js');
