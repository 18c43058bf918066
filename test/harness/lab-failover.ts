/**
 * The production topology with redundancy, inside the network-namespace lab: one real Postgres
 * (a throwaway cluster running in the ctl host), two `tunnel-control` replicas on it (ctl at
 * 10.77.0.10 and a second address 10.77.0.11, same master key, same certificate and key files,
 * same --public-url), and two relays (the relay host at 10.77.0.2 and a second address
 * 10.77.0.3, each with its own data directory and node identity). Clients are given both
 * replicas as one comma-separated list (`TUNNEL_SERVER` for the CLI, `--control-url` for the
 * relays) and one pin, which holds for both because they serve the same key.
 *
 * Both relays share the relay host's namespace, so the egress lock (one iptables chain per
 * namespace) is off for both; failover does not depend on it.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCert } from '../../control/tls/self-signed.js';
import { certificatePin } from '../../protocol/tls-trust.js';
import { controlBinary, expectStatus, passwordLogin, type ApiCall } from './control.js';
import { createLab, waitForOutput, type Lab } from './lab.js';
import { labCaller, LAB_CONTROL_PORT, LAB_RELAY_SSH_PORT } from './lab-stack.js';
import { startPostgres, type PostgresInstance } from './postgres.js';
import { startRelayProcess, type RelayProcess } from './relay-process.js';
import { ADMIN } from './stack.js';

/** The second addresses the failover lab adds on the wan (the first ones are lab.sh's). */
export const FAILOVER_PLAN = {
  controlAddrs: ['10.77.0.10', '10.77.0.11'],
  relayAddrs: ['10.77.0.2', '10.77.0.3'],
  metricsPort: 9090,
  /** The issuer every replica shares (a name, as in production; nothing resolves it). */
  publicUrl: `https://tunnel-control.lab:${LAB_CONTROL_PORT}`,
} as const;

export interface ControlReplica {
  name: string;
  url: string;
  child: ChildProcess;
  /** SIGKILL (or `signal`) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface FailoverRelay {
  name: string;
  nodeId: string;
  address: string;
  process: RelayProcess;
}

export interface FailoverLab {
  lab: Lab;
  postgres: PostgresInstance;
  /** Both replicas, comma-separated: what the CLI and the relays are given. */
  controlUrl: string;
  caPin: string;
  caFile: string;
  replicas: ControlReplica[];
  relays: FailoverRelay[];
  /** API calls from the ctl host to replica `i` (default: the first one alive in the list). */
  call: ApiCall;
  callOn(i: number): ApiCall;
  adminToken: string;
  /** Starts replica `i` again (after a kill). */
  startReplica(i: number): Promise<ControlReplica>;
  /** Starts relay `i` again on its data directory (after a kill). */
  startRelay(i: number): Promise<FailoverRelay>;
  destroy(): Promise<void>;
}

export interface FailoverLabOptions {
  /** Extra tunnel-control flags for both replicas. */
  controlArgs?: string[];
  /** Extra tunnel-node flags for both relays. */
  relayArgs?: string[];
}

/** Builds the lab, Postgres, two replicas, the first admin and two enrolled relays. */
export async function startFailoverLab(opts: FailoverLabOptions = {}): Promise<FailoverLab> {
  const lab = await createLab();
  const dirs: string[] = [];
  const replicas: (ControlReplica | undefined)[] = [];
  const relays: (FailoverRelay | undefined)[] = [];
  let postgres: PostgresInstance | undefined;
  const teardown = async () => {
    await Promise.all(relays.map((r) => r?.process.stop('SIGKILL').catch(() => undefined)));
    await Promise.all(replicas.map((r) => r?.kill('SIGKILL').catch(() => undefined)));
    await postgres?.stop().catch(() => undefined);
    await lab.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  try {
    const P = FAILOVER_PLAN;
    await lab.exec('ctl', 'ip', ['addr', 'add', `${P.controlAddrs[1]}/24`, 'dev', `${lab.prefix}eth0`]);
    await lab.exec('relay', 'ip', ['addr', 'add', `${P.relayAddrs[1]}/24`, 'dev', `${lab.prefix}wan`]);
    postgres = await startPostgres({ netns: lab.ns('ctl') });

    // One certificate for both replicas (both addresses in it), as the README asks of replicas.
    const shared = mkdtempSync(join(tmpdir(), 'tunnel-lab-failover-'));
    dirs.push(shared);
    const cert = createSelfSignedCert(['tunnel-control.lab', ...P.controlAddrs], new Date());
    const caFile = join(shared, 'cert.pem');
    const keyFile = join(shared, 'key.pem');
    const masterKeyFile = join(shared, 'master.key');
    writeFileSync(caFile, cert.certPem);
    writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });
    writeFileSync(masterKeyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const caPin = certificatePin(cert.certPem);
    const urls = P.controlAddrs.map((a) => `https://${a}:${LAB_CONTROL_PORT}`);
    const controlUrl = urls.join(',');
    const pgUrl = postgres.url;

    const startReplica = async (i: number): Promise<ControlReplica> => {
      const home = mkdtempSync(join(tmpdir(), 'tunnel-lab-replica-'));
      dirs.push(home);
      const child = lab.spawn('ctl', 'env', [
        '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, 'NODE_ENV=test',
        `DATABASE_URL=${pgUrl}`, `TUNNEL_MASTER_KEY_FILE=${masterKeyFile}`,
        process.execPath, controlBinary(), '--listen', `${P.controlAddrs[i]}:${LAB_CONTROL_PORT}`, '--public-url', P.publicUrl,
        '--tls-cert', caFile, '--tls-key', keyFile, '--data-dir', home, ...(opts.controlArgs ?? []),
      ]);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await waitForOutput(child, /Tunnel control plane ready at /, 60_000);
      const r: ControlReplica = {
        name: `control-${'ab'[i]}`,
        url: urls[i]!,
        child,
        async kill(signal = 'SIGKILL') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      };
      replicas[i] = r;
      return r;
    };
    // The first start migrates the empty database; then the second.
    await startReplica(0);
    await startReplica(1);

    const callOn = (i: number) => labCaller(lab, 'ctl', urls[i]!, caFile);
    // The admin comes from the command line on the host (no setup code needed).
    await lab.exec('ctl', 'env', [
      '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `DATABASE_URL=${pgUrl}`, `TUNNEL_MASTER_KEY_FILE=${masterKeyFile}`, `TUNNEL_PASSWORD=${ADMIN.password}`,
      process.execPath, controlBinary(), 'create-user', ADMIN.name, '--admin',
    ]);
    const alive = (): number => {
      const i = replicas.findIndex((r) => r !== undefined && r.child.exitCode === null && r.child.signalCode === null);
      if (i < 0) throw new Error('no control replica is running');
      return i;
    };
    const call: ApiCall = (method, path, o) => callOn(alive())(method, path, o);
    const adminToken = await passwordLogin(call, ADMIN.name, ADMIN.password);

    const relayDirs: string[] = [];
    const launchRelay = async (i: number, enrollToken?: string): Promise<FailoverRelay> => {
      const host = P.relayAddrs[i]!;
      const p = await startRelayProcess({
        controlUrl,
        enrollToken,
        dataDir: relayDirs[i]!,
        host,
        sshPort: LAB_RELAY_SSH_PORT,
        metricsPort: P.metricsPort,
        wrap: ['ip', 'netns', 'exec', lab.ns('relay')],
        args: ['--egress-driver', 'off', '--drain-timeout', '2s', '--health-detail', 'all', '--ca-pin', caPin, ...(opts.relayArgs ?? [])],
      });
      const r: FailoverRelay = { name: `relay-${'ab'[i]}`, nodeId: p.nodeId, address: `${host}:${LAB_RELAY_SSH_PORT}`, process: p };
      relays[i] = r;
      return r;
    };
    for (let i = 0; i < 2; i++) {
      const d = mkdtempSync(join(tmpdir(), 'tunnel-lab-node-'));
      dirs.push(d);
      relayDirs.push(d);
      const enroll = expectStatus(await call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name: `relay-${'ab'[i]}` } }), 201, 'enrollment token');
      await launchRelay(i, enroll.body.token as string);
    }

    return {
      lab,
      postgres,
      controlUrl,
      caPin,
      caFile,
      // Index i is replica / relay i (a restart replaces its entry).
      replicas: replicas as ControlReplica[],
      relays: relays as FailoverRelay[],
      call,
      callOn,
      adminToken,
      startReplica,
      startRelay: (i) => launchRelay(i),
      destroy: teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}

/** What a failover measurement saw. */
export interface FailoverRun {
  /** SIGKILL to the first `tunnel open` from Y that carried data to X's service and back. */
  ms: number;
  /** `tunnel open` attempts from Y until then (the failed ones fail fast, one line each). */
  attempts: number;
  /** The relay X was on before and after (relay kill), or the replica killed (control kill). */
  from: string;
  to: string;
}

/** `tunnel open NAME --stdio` from Y, once: true when "ping" came back from X's echo service. */
export async function openOnce(y: { run(args: string[], o?: { input?: string; timeoutMs?: number }): Promise<{ code: number | null; stdout: string }> }, exposure: string): Promise<boolean> {
  const r = await y.run(['open', exposure, '--stdio'], { input: 'ping\n', timeoutMs: 30_000 });
  return r.code === 0 && r.stdout === 'ping\n';
}

/** Repeats `openOnce` until it succeeds; fails after `limitMs` (a bound, not a timing claim). */
export async function untilOpenWorks(y: Parameters<typeof openOnce>[0], exposure: string, since: number, limitMs: number): Promise<{ ms: number; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    if (await openOnce(y, exposure)) return { ms: Date.now() - since, attempts };
    if (Date.now() - since > limitMs) throw new Error(`Y could not reach ${exposure} within ${limitMs} ms of the kill (${attempts} attempts)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The relay name in X's last `"event":"connected"` line (`tunnel expose --json`). */
export function currentRelay(exposeOutput: string): string | undefined {
  const lines = exposeOutput.split('\n').filter((l) => l.includes('"event":"connected"'));
  const last = lines[lines.length - 1];
  return last ? (JSON.parse(last) as { relay: string }).relay : undefined;
}

/**
 * SIGKILLs the relay holding X's exposure (X's `tunnel expose --json` output says which) and
 * measures until Y's `tunnel open` reaches X again; then starts the killed relay again, so a
 * next run has two relays. X must have moved to the other relay.
 */
export async function relayKillRun(fl: FailoverLab, xOutput: () => string, y: Parameters<typeof openOnce>[0], exposure: string, limitMs: number): Promise<FailoverRun> {
  const from = currentRelay(xOutput());
  const i = fl.relays.findIndex((r) => r.name === from);
  if (i < 0) throw new Error(`X is on no known relay (${from})`);
  const connectedBefore = xOutput().split('"event":"connected"').length;
  const t0 = Date.now();
  await fl.relays[i]!.process.stop('SIGKILL');
  const { ms, attempts } = await untilOpenWorks(y, exposure, t0, limitMs);
  const to = xOutput().split('"event":"connected"').length > connectedBefore ? currentRelay(xOutput()) : from;
  await fl.startRelay(i);
  return { ms, attempts, from: from!, to: to ?? 'unknown' };
}

/**
 * SIGKILLs control replica `i` and measures until Y's `tunnel open` (whose server list names
 * both replicas) reaches X again; then starts the replica again.
 */
export async function controlKillRun(fl: FailoverLab, i: number, y: Parameters<typeof openOnce>[0], exposure: string, limitMs: number, restart = true): Promise<FailoverRun> {
  const t0 = Date.now();
  await fl.replicas[i]!.kill('SIGKILL');
  const { ms, attempts } = await untilOpenWorks(y, exposure, t0, limitMs);
  if (restart) await fl.startReplica(i);
  return { ms, attempts, from: fl.replicas[i]!.name, to: fl.replicas[1 - i]!.name };
}
