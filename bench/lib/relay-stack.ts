/**
 * The Tunnel side of the relay benchmark: the real `tunnel-control` and `tunnel-node` processes
 * on loopback (test/harness), an admin, and leases issued through the API.
 */
import type { LeaseIssued } from '../../protocol/api-types.js';
import { expectStatus, httpCaller, passwordLogin, startControlProcess, type ApiCall, type ControlProcess } from '../../test/harness/control.js';
import { startRelayProcess, type RelayProcess } from '../../test/harness/relay-process.js';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';

const ADMIN = { name: 'admin', password: 'bench-admin-password-1' };

export interface RelayStack {
  control: ControlProcess;
  relay: RelayProcess;
  hostKeyLine: string;
  user: string;
  /** Authenticated API call as the admin (the token is refreshed before it expires). */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** PUT /v1/exposures/{name} (pinned to this relay). */
  exposure(name: string): Promise<void>;
  /**
   * Resolves once every one of `names` shows online (GET /v1/exposures): the control plane issues
   * open leases only for an exposure its relay has reported, which happens after X's
   * `tcpip-forward`, asynchronously. Polls every 100 ms; rejects after `timeoutMs`.
   */
  waitOnline(names: string[], timeoutMs?: number): Promise<void>;
  /** POST /v1/leases for `publicKeyLine`. */
  lease(body: { kind: 'expose' | 'open'; exposure: string; port?: number; ttl_seconds?: number }, publicKeyLine: string): Promise<LeaseIssued>;
  /**
   * SIGTERM the relay and start it again on the same data dir and ports (fresh process, fresh
   * memory); with `nodeArgs` (node flags) or `args` (tunnel-node flags), it runs with those from
   * then on.
   */
  restartRelay(nodeArgs?: string[], args?: string[]): Promise<RelayProcess>;
  /** The prefix the relay runs under (empty: none), for processes measured beside it. */
  readonly wrap: string[];
  stop(): Promise<void>;
}

export async function startRelayStack(
  relayArgs: string[],
  relayNodeArgs: string[] = [],
  relayEnv: Record<string, string> = {},
  controlEnv: Record<string, string> = {},
  /** A prefix for the relay's command (bench/lib/memory-cgroup.ts). */
  relayWrap?: string[],
): Promise<RelayStack> {
  const control = await startControlProcess({ env: controlEnv });
  let relay: RelayProcess | undefined;
  try {
    const call: ApiCall = httpCaller(control.url);
    expectStatus(await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: ADMIN.name, password: ADMIN.password } }), 201, 'setup');
    let token = await passwordLogin(call, ADMIN.name, ADMIN.password);
    let tokenAt = Date.now();
    // One login at a time: many concurrent calls finding the token old must not each log in
    // (the control plane rate-limits password logins).
    let refreshing: Promise<string> | undefined;
    const fresh = async () => {
      if (Date.now() - tokenAt > 4 * 60_000) {
        refreshing ??= passwordLogin(call, ADMIN.name, ADMIN.password).then(
          (t) => {
            token = t;
            tokenAt = Date.now();
            refreshing = undefined;
            return t;
          },
          (err: unknown) => {
            refreshing = undefined;
            throw err;
          },
        );
        return refreshing;
      }
      return token;
    };
    const enroll = expectStatus(await call('POST', '/v1/nodes/enrollment-tokens', { token, body: { name: 'relay-1' } }), 201, 'enrollment token');
    let nodeArgs = relayNodeArgs;
    let args = relayArgs;
    const start = (o: { enrollToken?: string; dataDir?: string; sshPort?: number; metricsPort?: number }) =>
      // Every lease of a bench is the one admin's: lift the per-member limits (bench:footprint holds 10,000 exposures).
      startRelayProcess({ controlUrl: control.url, ...o, args, nodeArgs, wrap: relayWrap, env: { TUNNEL_MAX_CONNECTIONS_PER_MEMBER: '1000000', TUNNEL_MAX_CHANNELS_PER_MEMBER: '1000000', ...relayEnv, TUNNEL_EGRESS_DRIVER: 'off' } });
    relay = await start({ enrollToken: enroll.body.token as string });
    const first = relay; // owns the data dir, which restarts reuse
    const hostKeyLine = (await loadOrCreateHostKey(relay.dataDir, noopLogger)).publicKeyLine;
    const api: RelayStack['api'] = async (method, path, body) => call(method, path, { token: await fresh(), body });
    const stack: RelayStack = {
      control,
      relay,
      wrap: relayWrap ?? [],
      hostKeyLine,
      user: ADMIN.name,
      api,
      async exposure(name) {
        const r = await api('PUT', `/v1/exposures/${name}`, { allow: [], node: 'relay-1' });
        if (r.status !== 200 && r.status !== 201) throw new Error(`PUT exposure ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      },
      async waitOnline(names, timeoutMs = 60_000) {
        const deadline = Date.now() + timeoutMs;
        let offline = names;
        for (;;) {
          const r = await api('GET', '/v1/exposures');
          if (r.status !== 200) throw new Error(`GET /v1/exposures: ${r.status} ${JSON.stringify(r.body)}`);
          const online = new Set((r.body as { exposures: { name: string; online: boolean }[] }).exposures.filter((e) => e.online).map((e) => e.name));
          offline = names.filter((n) => !online.has(n));
          if (offline.length === 0) return;
          if (Date.now() > deadline) throw new Error(`${offline.length} exposure(s) not online within ${timeoutMs} ms (first: ${offline[0]})`);
          await new Promise((res) => setTimeout(res, 100));
        }
      },
      async lease(body, publicKeyLine) {
        const r = await api('POST', '/v1/leases', { ...body, public_key: publicKeyLine });
        if (r.status !== 201) throw new Error(`POST /v1/leases: ${r.status} ${JSON.stringify(r.body)}`);
        return r.body as LeaseIssued;
      },
      async restartRelay(newNodeArgs, newArgs) {
        if (newNodeArgs) nodeArgs = newNodeArgs;
        if (newArgs) args = newArgs;
        const old = stack.relay;
        const end = await old.stop();
        if (end.code !== 0) throw new Error(`relay exited with ${end.code ?? end.signal} on SIGTERM`);
        relay = await start({ dataDir: old.dataDir, sshPort: old.sshPort, metricsPort: old.metricsPort });
        stack.relay = relay;
        return relay;
      },
      async stop() {
        await relay?.stop();
        first.cleanup();
        await control.stop();
        control.cleanup();
      },
    };
    return stack;
  } catch (err) {
    await relay?.stop();
    relay?.cleanup();
    await control.stop();
    control.cleanup();
    throw err;
  }
}
