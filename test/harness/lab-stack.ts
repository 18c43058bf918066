/**
 * The whole product inside the network-namespace lab: the real `tunnel-control` in the ctl host,
 * the real `tunnel-node` in the relay host (egress lock on, iptables inside the relay's own
 * namespace), and CLI users whose `tunnel` runs in hostx / hosty (behind their NATs). The test
 * process stays in the root namespace and reaches the control plane and the relay's health
 * port only by running small programs inside lab hosts, so no traffic leaves the lab.
 */
import type { ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlBinary, expectStatus, passwordLogin, type ApiCall, type ApiResult } from './control.js';
import { createLab, LabCommandError, repoRoot, waitForOutput, type CreateLabOptions, type Lab, type LabHost } from './lab.js';
import { startRelayProcess, type RelayProcess } from './relay-process.js';
import { ADMIN, cliBinary, type CliResult } from './stack.js';

export const LAB_CONTROL_PORT = 8080;
export const LAB_RELAY_SSH_PORT = 2222;
export const LAB_RELAY_METRICS_PORT = 9090;

/** A fetch run inside a lab host: prints {"status","body","headers"} for the test to parse. */
const FETCH_SCRIPT = `
const [method, url, token] = process.argv.slice(1);
let input = '';
process.stdin.setEncoding('utf8').on('data', (d) => (input += d)).on('end', async () => {
  const headers = {};
  if (token) headers.authorization = 'Bearer ' + token;
  if (input) headers['content-type'] = 'application/json';
  try {
    const res = await fetch(url, { method, headers, body: input || undefined, signal: AbortSignal.timeout(15000) });
    process.stdout.write(JSON.stringify({ status: res.status, body: await res.text(), headers: Object.fromEntries(res.headers) }));
  } catch (err) {
    process.stdout.write(JSON.stringify({ status: 0, body: String(err), headers: {} }));
  }
});
`;

/**
 * JSON calls to `baseUrl` made from inside lab host `from` (same shape as control.ts httpCaller).
 * For https, `caFile` is the PEM certificate to trust (the control plane's self-signed one).
 */
export function labCaller(lab: Lab, from: LabHost, baseUrl: string, caFile?: string): ApiCall {
  return async (method, path, o = {}) => {
    const body = o.body === undefined ? '' : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    const argv = ['-e', FETCH_SCRIPT, method, new URL(path, baseUrl).toString(), o.token ?? ''];
    const { stdout } = caFile
      ? await lab.exec(from, 'env', [`NODE_EXTRA_CA_CERTS=${caFile}`, process.execPath, ...argv], { input: body, timeoutMs: 20_000 })
      : await lab.exec(from, process.execPath, argv, { input: body, timeoutMs: 20_000 });
    const r = JSON.parse(stdout) as { status: number; body: string; headers: Record<string, string> };
    if (r.status === 0) throw new Error(`${method} ${path} from ${from}: ${r.body}`);
    let parsed: unknown = r.body;
    try {
      parsed = r.body ? JSON.parse(r.body) : null;
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: parsed, headers: new Headers(r.headers) } satisfies ApiResult;
  };
}

export interface LabCliUser {
  name: string;
  host: LabHost;
  home: string;
  /** The whole environment the CLI gets (nothing leaks in from the test runner). */
  env: Record<string, string>;
  /** Runs `tunnel ARGS` in the user's host to completion. */
  run(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CliResult>;
  /** Starts `tunnel ARGS` in the user's host (stopped by lab.destroy() at the latest). */
  spawn(args: string[]): ChildProcess;
}

export interface LabRelay {
  process: RelayProcess;
  /** host:port clients dial (the relay's wan address). */
  address: string;
}

export interface LabStackOptions {
  lab?: CreateLabOptions;
  /** Extra tunnel-node flags (the egress lock is on: --egress-driver iptables --egress-uid 0). */
  relayArgs?: string[];
  /**
   * Run the relay as this uid with only CAP_NET_ADMIN (as the systemd unit does), egress uid left
   * to its default (its own uid), instead of as root with --egress-uid 0.
   */
  relayUid?: number;
  /** Extra tunnel-control flags. */
  controlArgs?: string[];
}

export interface LabStack {
  lab: Lab;
  /** https://10.77.0.10:8080, as hosts in the lab reach it (its own self-signed certificate). */
  controlUrl: string;
  /** The control plane's certificate pin (relays and CLIs are given it with --ca-pin / TUNNEL_CA_PIN). */
  caPin: string;
  /** The control plane's certificate file (a CA file for curl, fetch, --ca-file). */
  caFile: string;
  /** API calls made from the ctl host. */
  call: ApiCall;
  adminToken: string;
  relay: LabRelay;
  /** The relay node's name in the control plane. */
  relayName: string;
  relayArgs: string[];
  /** Creates a user (member unless `role` says otherwise) and logs the CLI in on `host`. */
  user(name: string, host: LabHost, role?: 'admin' | 'member'): Promise<LabCliUser>;
  /** Stops the relay with `signal` (SIGTERM: graceful) and waits for its exit. */
  stopRelay(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Starts the relay again on the same data directory (no enrollment). */
  startRelay(extraArgs?: string[]): Promise<LabRelay>;
  /** GET the relay's /healthz from the ctl host. */
  relayHealth(): Promise<ApiResult>;
  /** `iptables-save -t filter` inside the relay's namespace. */
  relayIptables(): Promise<string>;
  /** Stops everything and destroys the lab (always). */
  destroy(): Promise<void>;
}

/** Builds a lab and starts control, relay (enrolled, online) and an admin in it. */
export async function startLabStack(opts: LabStackOptions = {}): Promise<LabStack> {
  const lab = await createLab(opts.lab);
  const dirs: string[] = [];
  let relay: LabRelay | undefined;
  try {
    const { ctl, relay: relayHost } = lab.hosts;
    // The control plane on a non-loopback address with the embedded database makes its own
    // certificate (the single-host default) and prints its pin; everyone is given that pin.
    const controlUrl = `https://${ctl.addr}:${LAB_CONTROL_PORT}`;
    const controlDir = mkdtempSync(join(tmpdir(), 'tunnel-lab-control-'));
    const controlHome = mkdtempSync(join(tmpdir(), 'tunnel-lab-control-home-'));
    dirs.push(controlDir, controlHome);
    const control = lab.spawn('ctl', 'env', [
      '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${controlHome}`, 'NODE_ENV=test',
      process.execPath, controlBinary(), '--listen', `${ctl.addr}:${LAB_CONTROL_PORT}`, '--data-dir', controlDir, ...(opts.controlArgs ?? []),
    ]);
    const started = await waitForOutput(control, /Tunnel control plane ready at /, 60_000);
    const setupCode = /"setup_code":"(setup_[A-Za-z0-9_-]+)"/.exec(started)?.[1];
    if (!setupCode) throw new Error(`tunnel-control printed no setup code:\n${started}`);
    const caPin = /\n {2}(sha256:[0-9a-f]{64})\n/.exec(started)?.[1];
    if (!caPin) throw new Error(`tunnel-control printed no certificate pin:\n${started}`);
    const caFile = join(controlDir, 'tls', 'cert.pem');

    const call = labCaller(lab, 'ctl', controlUrl, caFile);
    expectStatus(await call('POST', '/v1/setup', { body: { setup_code: setupCode, name: ADMIN.name, password: ADMIN.password } }), 201, 'setup');
    const adminToken = await passwordLogin(call, ADMIN.name, ADMIN.password);
    const relayName = 'relay-1';
    const enroll = expectStatus(await call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name: relayName } }), 201, 'enrollment token');

    const relayDir = mkdtempSync(join(tmpdir(), 'tunnel-lab-node-'));
    dirs.push(relayDir);
    // The metrics port is on the lab's WAN address (not loopback): allow /healthz?detail=1 there.
    const uid = opts.relayUid;
    if (uid !== undefined) chownSync(relayDir, uid, uid);
    const asUser =
      uid === undefined
        ? []
        : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=+net_admin', '--ambient-caps=+net_admin', '--bounding-set=-all,+net_admin'];
    const relayArgs = [
      '--egress-driver', 'iptables', ...(uid === undefined ? ['--egress-uid', '0'] : []), '--drain-timeout', '2s', '--health-detail', 'all', '--ca-pin', caPin, ...(opts.relayArgs ?? []),
    ];
    const launch = async (enrollToken: string | undefined, extra: string[] = []): Promise<LabRelay> => {
      const p = await startRelayProcess({
        controlUrl,
        enrollToken,
        dataDir: relayDir,
        host: relayHost.wanAddr,
        sshPort: LAB_RELAY_SSH_PORT,
        metricsPort: LAB_RELAY_METRICS_PORT,
        wrap: ['ip', 'netns', 'exec', relayHost.ns, ...asUser],
        args: [...relayArgs, ...extra],
      });
      return { process: p, address: `${relayHost.wanAddr}:${LAB_RELAY_SSH_PORT}` };
    };
    relay = await launch(enroll.body.token as string);

    const stack: LabStack = {
      lab,
      controlUrl,
      caPin,
      caFile,
      call,
      adminToken,
      relay,
      relayName,
      relayArgs,
      async user(name, host, role = 'member') {
        const password = name === ADMIN.name ? ADMIN.password : `${name}-password-123`;
        if (name !== ADMIN.name) {
          expectStatus(await call('POST', '/v1/users', { token: adminToken, body: { name, password, role } }), 201, `create user ${name}`);
        }
        const home = mkdtempSync(join(tmpdir(), `tunnel-lab-cli-${name}-`));
        dirs.push(home);
        mkdirSync(join(home, '.config'), { recursive: true });
        const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_CONFIG_HOME: join(home, '.config'), TUNNEL_SERVER: controlUrl, TUNNEL_CA_PIN: caPin };
        const argv = (args: string[]) => ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, cliBinary(), ...args];
        const u: LabCliUser = {
          name,
          host,
          home,
          env,
          async run(args, o = {}) {
            try {
              const r = await lab.exec(host, 'env', argv(args), { input: o.input ?? '', timeoutMs: o.timeoutMs ?? 60_000 });
              return { code: 0, ...r };
            } catch (err) {
              if (err instanceof LabCommandError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
              throw err;
            }
          },
          spawn: (args) => lab.spawn(host, 'env', argv(args)),
        };
        const login = await u.run(['login', '--password', '--user', name], { input: `${password}\n` });
        if (login.code !== 0) throw new Error(`tunnel login as ${name} on ${host} failed (${login.code}): ${login.stderr}`);
        return u;
      },
      async stopRelay(signal = 'SIGTERM') {
        return stack.relay.process.stop(signal);
      },
      async startRelay(extra = []) {
        stack.relay = relay = await launch(undefined, extra);
        return relay;
      },
      relayHealth: () => labCaller(lab, 'ctl', `http://${relayHost.wanAddr}:${LAB_RELAY_METRICS_PORT}`)('GET', '/healthz?detail=1'),
      async relayIptables() {
        return (await lab.exec('relay', 'iptables-save', ['-t', 'filter'])).stdout;
      },
      async destroy() {
        try {
          await stack.relay.process.stop('SIGKILL');
        } finally {
          await lab.destroy();
          for (const d of dirs) rmSync(d, { recursive: true, force: true });
        }
      },
    };
    return stack;
  } catch (err) {
    await relay?.process.stop('SIGKILL').catch(() => undefined);
    await lab.destroy().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw err;
  }
}

/** Defines target-ok (the relay LAN's permitted service) as egress target `target-ok` for `allow`. */
export async function defineTargetOk(stack: LabStack, allow: string[]): Promise<void> {
  const { targetOk } = stack.lab.hosts;
  expectStatus(
    await stack.call('PUT', '/v1/egress-targets/target-ok', {
      token: stack.adminToken,
      body: { node: stack.relayName, host: targetOk.addr, port: targetOk.port, allow },
    }),
    200,
    'define egress target',
  );
}

/**
 * Starts the real OpenSSH client in a lab host (`ssh -v`, batch mode, no config file, strict
 * host keys from the caller's options) and resolves once it authenticated. The process is
 * tracked by the lab; kill it (or let destroy() do it) when done.
 */
export async function labSsh(lab: Lab, host: LabHost, args: string[], timeoutMs = 20_000): Promise<{ child: ChildProcess; output: string }> {
  const child = lab.spawn(host, 'ssh', ['-v', '-F', 'none', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'ServerAliveInterval=5', ...args]);
  const output = await waitForOutput(child, /Authenticated to /, timeoutMs);
  return { child, output };
}

/** Polls `check` until it returns a value (not undefined); fails after `timeoutMs` with `what`. */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 5000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export { repoRoot };
