/**
 * A stand-in for `systemctl` and `journalctl` inside the deploy-guide lab, where systemd is not
 * PID 1. It runs an installed unit the way systemd would run the parts the guide relies on, and
 * nothing more:
 * - `systemctl enable --now UNIT...` / `start` / `restart`: reads /etc/systemd/system/UNIT (a
 *   template instance `NAME@I.service` reads `NAME@.service`), then starts a detached supervisor
 *   that runs ExecStartPre and ExecStart as User= (or a dynamic uid for DynamicUser=yes) with
 *   only AmbientCapabilities= (setpriv), Environment= and EnvironmentFile= applied, %i %S %d
 *   specifiers and $VAR / ${VAR} expanded, StateDirectory= created and owned by the user,
 *   LoadCredential= files copied into $CREDENTIALS_DIRECTORY, and Restart=always honoured.
 *   Output goes to /run/unit-logs/UNIT.log.
 * - `systemctl stop UNIT`, `systemctl reload UNIT` (SIGHUP), `systemctl daemon-reload` (nothing to do).
 * - `journalctl -u UNIT [anything]`: prints that log.
 * Usage: node unit-runner.js systemctl|journalctl ARGS...
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const UNIT_DIR = '/etc/systemd/system';
const LOG_DIR = '/run/unit-logs';
const DYNAMIC_UID = 61184; // the first uid systemd hands to DynamicUser= services
const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Unit {
  name: string;
  instance: string;
  entries: [string, string][];
}

function fail(msg: string): never {
  process.stderr.write(`unit-runner: ${msg}\n`);
  process.exit(1);
}

function loadUnit(name: string): Unit {
  const full = name.includes('.') ? name : `${name}.service`;
  const m = /^([^@]+)@([^.]*)\.service$/.exec(full);
  const file = join(UNIT_DIR, m ? `${m[1]}@.service` : full);
  if (!existsSync(file)) fail(`Unit ${full} not found.`);
  const entries: [string, string][] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#') || t.startsWith('[')) continue;
    const eq = t.indexOf('=');
    if (eq > 0) entries.push([t.slice(0, eq), t.slice(eq + 1)]);
  }
  return { name: full, instance: m?.[2] ?? '', entries };
}

const all = (u: Unit, key: string) => u.entries.filter(([k]) => k === key).map(([, v]) => v);
const last = (u: Unit, key: string) => all(u, key).at(-1);

function specifiers(u: Unit, s: string): string {
  return s.replace(/%([%iSd])/g, (_, c: string) =>
    c === '%' ? '%' : c === 'i' ? u.instance : c === 'S' ? '/var/lib' : join('/run/credentials', u.name),
  );
}

function envFile(path: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!.trim().replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
  }
  return env;
}

/** systemd's command-line expansion: `$VAR` alone becomes its words, `${VAR}` one word. */
function commandLine(u: Unit, line: string, env: Record<string, string>): string[] {
  const words: string[] = [];
  for (const raw of specifiers(u, line).trim().replace(/^[-@:+!]+/, '').split(/\s+/)) {
    const bare = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(raw);
    if (bare) words.push(...(env[bare[1]!] ?? '').split(/\s+/).filter(Boolean));
    else words.push(raw.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => env[k] ?? ''));
  }
  return words;
}

function idOf(flag: '-u' | '-g', user: string): number {
  const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
  if (r.status !== 0) fail(`no user ${user}: ${r.stderr.trim()}`);
  return Number(r.stdout.trim());
}

interface Prepared {
  env: Record<string, string>;
  wrap: string[];
  pre: string[][];
  start: string[];
  restart: boolean;
  restartMs: number;
}

function prepare(u: Unit): Prepared {
  const dynamic = last(u, 'DynamicUser') === 'yes';
  const user = dynamic ? undefined : last(u, 'User');
  const uid = dynamic ? DYNAMIC_UID : user ? idOf('-u', user) : 0;
  const gid = dynamic ? DYNAMIC_UID : user ? idOf('-g', last(u, 'Group') ?? user) : 0;
  const env: Record<string, string> = { PATH: BASE_PATH, LANG: 'C.UTF-8' };
  if (user) Object.assign(env, { USER: user, LOGNAME: user, HOME: spawnSync('sh', ['-c', `getent passwd ${user} | cut -d: -f6`], { encoding: 'utf8' }).stdout.trim() || '/' });
  if (dynamic) {
    // What nss-systemd answers for a dynamic user (a name from the unit, HOME=/), here as lines in this host's own /etc.
    const name = u.name.replace(/\.service$/, '').replace(/[^a-z0-9-]/g, '-').slice(0, 31);
    Object.assign(env, { USER: name, LOGNAME: name, HOME: '/' });
    if (!readFileSync('/etc/passwd', 'utf8').includes(`:${DYNAMIC_UID}:`)) {
      appendFileSync('/etc/passwd', `${name}:x:${DYNAMIC_UID}:${DYNAMIC_UID}:Dynamic User:/:/usr/sbin/nologin\n`);
      appendFileSync('/etc/group', `${name}:x:${DYNAMIC_UID}:\n`);
    }
  }
  for (const e of all(u, 'Environment')) {
    const v = specifiers(u, e);
    const eq = v.indexOf('=');
    env[v.slice(0, eq)] = v.slice(eq + 1);
  }
  for (const f of all(u, 'EnvironmentFile')) Object.assign(env, envFile(specifiers(u, f).replace(/^-/, '')));
  for (const d of all(u, 'StateDirectory')) {
    const dir = join('/var/lib', specifiers(u, d));
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, parseInt(last(u, 'StateDirectoryMode') ?? '0755', 8));
    chownSync(dir, uid, gid);
  }
  const creds = all(u, 'LoadCredential');
  if (creds.length > 0) {
    mkdirSync('/run/credentials', { recursive: true, mode: 0o755 });
    const dir = join('/run/credentials', u.name);
    mkdirSync(dir, { recursive: true, mode: 0o500 });
    for (const c of creds) {
      const [id, path] = specifiers(u, c).split(':') as [string, string];
      copyFileSync(path, join(dir, id));
      chmodSync(join(dir, id), 0o400);
      chownSync(join(dir, id), uid, gid);
    }
    chownSync(dir, uid, gid);
    env.CREDENTIALS_DIRECTORY = dir;
  }
  const caps = (last(u, 'AmbientCapabilities') ?? '').split(/\s+/).filter(Boolean).map((c) => c.toLowerCase().replace(/^cap_/, ''));
  const wrap =
    uid === 0
      ? []
      : [
          'setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups',
          ...(caps.length ? [`--inh-caps=${caps.map((c) => `+${c}`).join(',')}`, `--ambient-caps=${caps.map((c) => `+${c}`).join(',')}`] : ['--inh-caps=-all']),
          `--bounding-set=-all${caps.map((c) => `,+${c}`).join('')}`,
          ...(last(u, 'NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []),
        ];
  const start = last(u, 'ExecStart');
  if (!start) fail(`${u.name} has no ExecStart`);
  return {
    env,
    wrap,
    pre: all(u, 'ExecStartPre').map((l) => commandLine(u, l, env)),
    start: commandLine(u, start, env),
    restart: ['always', 'on-failure'].includes(last(u, 'Restart') ?? 'no'),
    restartMs: parseFloat(last(u, 'RestartSec') ?? '0.1') * 1000,
  };
}

const pidFile = (unit: string) => join(LOG_DIR, `${unit}.pid`);
const logFile = (unit: string) => join(LOG_DIR, `${unit}.log`);

/** The supervisor: ExecStartPre then ExecStart, again after RestartSec while Restart= says so. */
async function supervise(unitName: string): Promise<void> {
  const u = loadUnit(unitName);
  const p = prepare(u);
  let child: ReturnType<typeof spawn> | undefined;
  let stopping = false;
  process.on('SIGTERM', () => {
    stopping = true;
    child?.kill('SIGTERM');
  });
  process.on('SIGHUP', () => child?.kill('SIGHUP'));
  const run = (argv: string[]) =>
    new Promise<number | null>((resolve) => {
      child = spawn(p.wrap[0] ?? argv[0]!, [...p.wrap.slice(1), ...(p.wrap.length ? argv : argv.slice(1))], { env: p.env, stdio: ['ignore', 'inherit', 'inherit'], cwd: '/' });
      child.once('error', (e) => {
        process.stderr.write(`${String(e)}\n`);
        resolve(1);
      });
      child.once('exit', (code) => resolve(code));
    });
  for (;;) {
    let ok = true;
    for (const pre of p.pre) if ((await run(pre)) !== 0) ok = false;
    const code = ok ? await run(p.start) : 1;
    process.stdout.write(`unit-runner: ${u.name} exited (${code})\n`);
    if (stopping || !p.restart) break;
    await new Promise((r) => setTimeout(r, p.restartMs));
    if (stopping) break;
  }
}

function systemctl(args: string[]): void {
  const verbs = args.filter((a) => !a.startsWith('-'));
  const [verb, ...units] = verbs;
  const now = args.includes('--now');
  mkdirSync(LOG_DIR, { recursive: true });
  const startUnit = (unit: string) => {
    const name = loadUnit(unit).name;
    prepare(loadUnit(unit)); // fail here, in the caller's terminal, on a broken unit
    const out = openSync(logFile(name), 'a');
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--supervise', name], { detached: true, stdio: ['ignore', out, out] });
    writeFileSync(pidFile(name), `${child.pid}\n`);
    child.unref();
  };
  const signal = (unit: string, sig: NodeJS.Signals) => {
    const name = loadUnit(unit).name;
    if (!existsSync(pidFile(name))) return;
    try {
      process.kill(Number(readFileSync(pidFile(name), 'utf8')), sig);
    } catch {
      /* not running */
    }
  };
  switch (verb) {
    case 'daemon-reload':
      return;
    case 'enable':
      if (now) units.forEach(startUnit);
      return;
    case 'start':
      units.forEach(startUnit);
      return;
    case 'restart':
      units.forEach((un) => signal(un, 'SIGTERM'));
      units.forEach(startUnit);
      return;
    case 'stop':
      units.forEach((un) => signal(un, 'SIGTERM'));
      return;
    case 'reload':
      units.forEach((un) => signal(un, 'SIGHUP'));
      return;
    default:
      fail(`systemctl ${verb ?? ''}: not supported by this stand-in`);
  }
}

function journalctl(args: string[]): void {
  const i = args.indexOf('-u');
  const unit = i >= 0 ? args[i + 1] : undefined;
  if (!unit) fail('journalctl: give -u UNIT');
  const name = loadUnit(unit).name;
  if (existsSync(logFile(name))) process.stdout.write(readFileSync(logFile(name)));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === '--supervise') await supervise(rest[0]!);
else if (mode === 'systemctl') systemctl(rest);
else if (mode === 'journalctl') journalctl(rest);
else fail('usage: unit-runner.js systemctl|journalctl ARGS');
