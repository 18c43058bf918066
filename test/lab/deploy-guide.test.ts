/**
 * Must-show 1 of issue 10: docs/deploy.md followed as written across the network-namespace lab.
 * Z (the lab's relay host: on the wan, with the private network 10.77.1.0/24 behind it) runs the
 * control plane on a real PostgreSQL with its own TLS certificate and the relay as its own user
 * with only CAP_NET_ADMIN; X and Y sit behind their NATs. Every host installs the `npm pack`
 * tarball into /opt/tunnel. Every block marked `<!-- deploy HOST:LABEL -->` runs in order on its
 * host; what the test provides instead of a real machine (systemd, DNS, Postgres from apt, a
 * browser, pasting values) is listed in the guide's "How the test follows this guide".
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { createLab, labSkipReason, repoRoot, waitForOutput, type Lab, type LabHost } from '../harness/lab.js';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../harness/postgres.js';

const GUIDE = 'docs/deploy.md';
const Z_NAME = 'tunnel.example.net';
const HOSTS = { Z: 'relay', X: 'hostx', Y: 'hosty' } as const satisfies Record<string, LabHost>;
type GuideHost = keyof typeof HOSTS;
const ADMIN_PASSWORD = 'deploy-admin-password-1';
const ALICE_PASSWORD = 'deploy-alice-password-1';
/** What each block reads from standard input (what the operator types). */
const INPUT: Record<string, string> = { 'Z:first-admin': `${ADMIN_PASSWORD}\n`, 'Z:grants': `${ALICE_PASSWORD}\n` };

interface Step {
  host: GuideHost;
  label: string;
  script: string;
}

/** The guide's marked blocks in order (a block under several markers runs once per host). */
export function guideSteps(markdown: string): Step[] {
  const steps: Step[] = [];
  const re = /((?:^<!-- deploy [^\n]*-->\n)+)```sh\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(re)) {
    for (const marker of m[1]!.trim().split('\n')) {
      const k = /^<!-- deploy ([ZXY]):([a-z-]+) -->$/.exec(marker);
      if (k) steps.push({ host: k[1] as GuideHost, label: `${k[1]}:${k[2]}`, script: m[2]! });
      else if (!/^<!-- deploy none: .+ -->$/.test(marker)) throw new Error(`${GUIDE}: unknown marker ${marker}`);
    }
  }
  return steps;
}

const scratch = mkdtempSync(join(tmpdir(), 'tunnel-deploy-guide-'));
let lab: Lab | undefined;
let pg: PostgresInstance | undefined;
const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await lab?.destroy().catch((e: unknown) => console.error(e));
  await pg?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** Each host's own /etc (a copy), /var/lib, /opt, /root, /home and /run, and its systemctl/journalctl stand-ins. */
function makeMachine(host: GuideHost, tarball: string): string {
  const root = join(scratch, host);
  for (const d of ['varlib', 'opt', 'root', 'home', 'run', 'run/standin']) mkdirSync(join(root, d), { recursive: true });
  const cp = spawnSync('cp', ['-a', '/etc', join(root, 'etc')], { encoding: 'utf8' });
  if (cp.status !== 0) throw new Error(`copying /etc: ${cp.stderr}`);
  appendFileSync(join(root, 'etc', 'hosts'), `\n10.77.0.2 ${Z_NAME}\n`);
  writeFileSync(join(root, 'etc', 'hostname'), `${host.toLowerCase()}\n`);
  for (const d of ['', 'varlib', 'opt', 'root', 'home', 'run', 'etc']) chmodSync(join(root, d), 0o755);
  chmodSync(join(root, 'root'), 0o700);
  copyFileSync(tarball, join(root, 'root', 'tunnel-0.1.0.tgz'));
  const runner = join(repoRoot(), 'dist', 'test', 'harness', 'unit-runner.js');
  for (const tool of ['systemctl', 'journalctl']) {
    const f = join(root, 'run', 'standin', tool);
    writeFileSync(f, `#!/bin/sh\nexec '${process.execPath}' '${runner}' ${tool} "$@"\n`);
    chmodSync(f, 0o755);
  }
  return root;
}

const NPM_CACHE = '/root/.npm';

/**
 * The shell that enters a host: its private mounts, then `bash -l -e -c SCRIPT` as root in /root.
 * `netns` undefined: the root network namespace (for npm install, which needs the registry).
 */
function hostCommand(host: GuideHost, root: string, script: string, netns: string | undefined): string[] {
  const bind = (from: string, to: string) => `mount --rbind '${from}' '${to}'`;
  const setup = [
    'set -e',
    // The npm cache stays the test machine's (a bind inside the host's /root).
    existsSync(NPM_CACHE) ? `mkdir -p '${root}/root/.npm' && mount --bind '${NPM_CACHE}' '${root}/root/.npm'` : 'true',
    bind(join(root, 'etc'), '/etc'),
    bind(join(root, 'varlib'), '/var/lib'),
    bind(join(root, 'opt'), '/opt'),
    bind(join(root, 'root'), '/root'),
    bind(join(root, 'home'), '/home'),
    bind(join(root, 'run'), '/run'),
    "mount --bind /run/standin/systemctl /usr/bin/systemctl",
    "mount --bind /run/standin/journalctl /usr/bin/journalctl",
    'cd /root',
    'exec bash -l -e -c "$GUIDE_SCRIPT"',
  ].join('\n');
  const inner = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', setup];
  void host;
  return netns ? ['ip', 'netns', 'exec', netns, ...inner] : inner;
}

interface Run {
  child: ChildProcess;
  output: () => string;
  done: Promise<{ code: number | null; out: string }>;
}

function runBlock(step: Step, root: string, netns: string | undefined, script: string): Run {
  const [cmd, ...args] = hostCommand(step.host, root, script, netns);
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', TERM: 'dumb', GUIDE_SCRIPT: script,
    npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false',
  };
  const child = spawn(cmd!, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(INPUT[step.label] ?? '');
  const done = new Promise<{ code: number | null; out: string }>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve({ code, out });
    }),
  );
  return { child, output: () => out, done };
}

async function finish(step: Step, run: Run, timeoutMs: number): Promise<string> {
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
  const { code, out } = await run.done;
  clearTimeout(timer);
  console.log(`--- ${step.label} (exit ${code})\n${out.trimEnd()}`);
  assert.equal(code, 0, `block ${step.label} failed (exit ${code}):\n${step.script}\n--- output:\n${out}`);
  return out;
}

/** Y's browser: sign in as alice on the page `tunnel login` printed and approve its code. */
async function approveInBrowser(l: Lab, url: string, code: string, pin: string): Promise<void> {
  const spki = Buffer.from(pin.slice('sha256:'.length), 'hex').toString('base64');
  const curl = ['curl', '-sS', '--fail-with-body', '--max-time', '20', '--insecure', '--pinnedpubkey', `sha256//${spki}`, '--resolve', `${Z_NAME}:8443:10.77.0.2`];
  const page = await l.exec('hosty', curl[0]!, [...curl.slice(1), url]);
  assert.ok(page.stdout.includes(code), 'the page shows the code');
  const form = (fields: Record<string, string>) => Object.entries(fields).flatMap(([k, v]) => ['--data-urlencode', `${k}=${v}`]);
  const signIn = await l.exec('hosty', curl[0]!, [...curl.slice(1), ...form({ user_code: code, username: 'alice', password: ALICE_PASSWORD }), `https://${Z_NAME}:8443/device`]);
  const ticket = /name="ticket" value="([A-Za-z0-9_.-]+)"/.exec(signIn.stdout)?.[1];
  assert.ok(ticket, signIn.stdout);
  const decided = await l.exec('hosty', curl[0]!, [...curl.slice(1), ...form({ ticket, decision: 'approve' }), `https://${Z_NAME}:8443/device/decision`]);
  assert.match(decided.stdout, /Device approved/);
}

const skip = labSkipReason() ?? postgresUnavailableReason();

it('docs/deploy.md, followed as written on Z, X and Y in the lab', { skip, timeout: 900_000 }, async () => {
  const t0 = Date.now();
  const steps = guideSteps(readFileSync(join(repoRoot(), GUIDE), 'utf8'));
  const labels = steps.map((s) => s.label);
  for (const want of ['Z:install', 'X:install', 'Y:install', 'Z:control', 'Z:first-admin', 'Z:relay', 'Z:grants', 'X:expose', 'Y:login', 'Y:key', 'Y:ssh', 'Z:egress', 'Y:egress', 'Y:session', 'Z:revoke', 'Z:rotate']) {
    assert.ok(labels.includes(want), `${GUIDE} has no block ${want}`);
  }

  // The package, as an operator makes it.
  const { stdout: packed } = await promisify(execFile)('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], { cwd: repoRoot(), maxBuffer: 16 << 20 });
  const tarball = join(scratch, (JSON.parse(packed) as { filename: string }[])[0]!.filename);

  lab = await createLab();
  const l = lab;
  const roots = { Z: makeMachine('Z', tarball), X: makeMachine('X', tarball), Y: makeMachine('Y', tarball) };
  // Step 2 of the guide: the test's PostgreSQL in Z's namespace on 127.0.0.1:5432, role tunnel owning database tunnel.
  pg = await startPostgres({ netns: l.ns('relay'), port: 5432 });
  await l.exec('relay', 'runuser', ['-u', 'postgres', '--', 'psql', '-h', '127.0.0.1', '-p', '5432', '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', "create role tunnel login password 'db-password'", '-c', 'alter database tunnel owner to tunnel', 'postgres']);
  console.log(`lab and Postgres ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const values: Record<string, string> = { '<hostx-host-key>': l.hosts.hostx.sshHostKey };
  let session: { step: Step; run: Run } | undefined;
  let firstSsh: number | undefined;
  // The three hosts install at the same time, as three machines would.
  const installs = steps.filter((s) => s.label.endsWith(':install'));
  const tInstall = Date.now();
  await Promise.all(installs.map((step) => finish(step, runBlock(step, roots[step.host], undefined, step.script), 600_000)));
  console.log(`npm install on Z, X and Y (in parallel): ${((Date.now() - tInstall) / 1000).toFixed(1)} s`);
  for (const step of steps.filter((s) => !s.label.endsWith(':install'))) {
    const script = Object.entries(values).reduce((s, [k, v]) => s.split(k).join(v), step.script);
    assert.doesNotMatch(script, /<(pin|service-token|hostx-host-key)>/, `${step.label}: a value to paste is not known yet`);
    const run = runBlock(step, roots[step.host], l.ns(HOSTS[step.host]), script);
    if (step.label === 'Y:session') {
      await waitForOutput(run.child, /connected to X/, 60_000);
      session = { step, run };
      continue;
    }
    if (step.label === 'Y:login') {
      const printed = await waitForOutput(run.child, /\(or open (\S+)\)/, 60_000);
      const url = /\(or open (\S+)\)/.exec(printed)![1]!;
      const code = /enter the code (\S+)/.exec(printed)![1]!;
      await approveInBrowser(l, url, code, values['<pin>']!);
    }
    const out = await finish({ ...step, script }, run, 120_000);
    switch (step.label) {
      case 'Z:control': {
        const pin = /sha256:[0-9a-f]{64}/.exec(out)?.[0];
        assert.ok(pin, 'Z printed the pin');
        // The pin is the certificate's key: what the CLI and relay will check.
        const cert = new X509Certificate(readFileSync(join(roots.Z, 'etc', 'tunnel', 'tls', 'fullchain.pem')));
        assert.equal(`sha256:${createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}`, pin);
        values['<pin>'] = pin;
        break;
      }
      case 'Z:relay': {
        const relayPid = await checkRelayUser(l);
        // The line `tunnel admin enroll-token` printed for root (tunnel-node itself refuses root)
        // sets what the guide's relay was started with.
        const hint = /^ {2}printf '%s\\n' (.+) > \/etc\/tunnel\/node\.env && systemctl enable --now tunnel-node$/m.exec(out);
        assert.ok(hint, `enroll-token printed no line for root:\n${out}`);
        const environ = readFileSync(`/proc/${relayPid}/environ`, 'utf8').split('\0');
        for (const setting of hint[1]!.split(' ')) assert.ok(environ.includes(setting), `${setting.replace(/TOKEN=.*/, 'TOKEN=...')} is in the relay's environment`);
        break;
      }
      case 'Z:grants': {
        const token = out.trim().split('\n').at(-1)!.trim();
        assert.match(token, /^[A-Za-z0-9_.-]{20,}$/, 'the service token is the last line');
        values['<service-token>'] = token;
        break;
      }
      case 'Y:key':
        appendFileSync(l.hosts.hostx.authorizedKeysFile, `${/ssh-ed25519 \S+/.exec(out)![0]}
`);
        break;
      case 'Y:ssh':
        assert.match(out, /hello from .*, as root/);
        firstSsh ??= Date.now();
        console.log(`deploy guide: from nothing to the first ssh from Y to X: ${((firstSsh - t0) / 1000).toFixed(1)} s`);
        break;
      case 'Y:egress':
        assert.match(out, new RegExp(`egress target says: ${l.hosts.targetOk.banner}`));
        break;
      case 'Z:revoke': {
        assert.ok(session, 'Y:session runs before Z:revoke');
        const ended = await finish(session.step, session.run, 60_000);
        assert.match(ended, /ssh ended with exit code 255/);
        break;
      }
      case 'Z:rotate':
        assert.match(out, /published new keys \S+ and \S+/);
        break;
    }
  }
  assert.ok(firstSsh, 'the guide got to an ssh');
  // After the revocation and the rotation alice still gets in (a new lease; she is still allowed).
  const again = runBlock({ host: 'Y', label: 'Y:again', script: '' }, roots.Y, l.ns('hosty'), "ssh -o BatchMode=yes root@hostx-ssh 'echo again'");
  assert.match(await finish({ host: 'Y', label: 'Y:again', script: 'ssh' }, again, 60_000), /^again$/m);
  console.log(`deploy guide: whole guide ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

/** The relay runs as tunnel-node with only CAP_NET_ADMIN, and Z's egress chain filters that uid. */
async function checkRelayUser(l: Lab): Promise<string> {
  const { stdout: all } = await promisify(execFile)('ip', ['netns', 'pids', l.ns('relay')]);
  const relayPid = all.trim().split(/\s+/).find((pid) => {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes('/bin/tunnel-node') && !cmdline.includes('unit-runner');
    } catch {
      return false;
    }
  });
  assert.ok(relayPid, 'tunnel-node runs in Z');
  const status = readFileSync(`/proc/${relayPid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
  assert.notEqual(uid, 0, 'not root');
  assert.equal(/^CapEff:\s+(\S+)/m.exec(status)![1], '0000000000001000', 'CAP_NET_ADMIN only');
  const rules = (await l.exec('relay', 'iptables-save', ['-t', 'filter'])).stdout;
  assert.match(rules, new RegExp(`--uid-owner ${uid}\\b`), rules);
  return relayPid;
}
