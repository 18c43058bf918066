import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { createControlClient, type ControlClient } from './control-client.js';
import { randomIds } from './deps.js';
import { systemClock, type Clock } from '../shared/clock.js';
import type { Dialer } from './egress/dial.js';
import { FirewallError, OffFirewall, type Firewall } from './egress/firewall.js';
import { resolveBaseRules } from './egress/base-rules.js';
import { IptablesFirewall } from './egress/iptables-firewall.js';
import type { BaseRules } from './egress/rules.js';
import { execFileRunner } from './egress/iptables-runner.js';
import { ensureEnrolled, loadOrCreateHostKey, readNodeState, type NodeState } from './enrollment.js';
import { createFaultInjector } from './fault-guard.js';
import type { Logger } from '../shared/logger.js';
import { createRelay, type Relay } from './relay.js';
import { TUNNEL_VERSION } from '../protocol/api-level.js';

export interface BootedRelay {
  relay: Relay;
  state: NodeState;
  hostKeyLine: string;
  control: ControlClient;
  addrs: { ssh: AddressInfo; metrics: AddressInfo };
  /** Graceful stop: drain the relay, then close the control client. */
  stop(): Promise<void>;
}

/**
 * The firewall `--egress-driver` asks for. iptables filters the traffic of `--egress-uid`
 * (default: this process's uid), so the chain applies to the relay itself.
 */
export function createFirewall(config: Readonly<Config>): Firewall {
  if (config.egress.driver === 'off') return new OffFirewall();
  const uid = config.egress.uid ?? process.getuid?.();
  if (uid === undefined) throw new FirewallError('the iptables egress driver needs a uid: set --egress-uid');
  if (config.egress.uid === undefined && uid === 0) {
    // Filtering uid 0 locks every root process on the host, and the closed chain outlives the relay.
    throw new FirewallError('tunnel-node runs as root, so the egress chain would filter all of root\'s outbound traffic', {
      hint: 'run it as its own user with CAP_NET_ADMIN (infra/systemd/tunnel-node.service does), or pass --egress-uid 0 if this host (or network namespace) runs nothing else as root',
    });
  }
  return new IptablesFirewall({ runner: execFileRunner(), uid });
}

/** The one line an operator sees when the egress lock cannot be set up. */
export function firewallStartMessage(err: FirewallError): string {
  const hint = err.hint ?? 'run tunnel-node as root or with CAP_NET_ADMIN, or pass --egress-driver off to run without kernel enforcement of egress targets';
  return `cannot set up the egress lock (${err.message}): ${hint}`;
}

/** The chain's base rules; a control host that does not resolve is a FirewallError with its own hint. */
async function resolveEgressBase(controlUrl: string): Promise<BaseRules> {
  try {
    return await resolveBaseRules(controlUrl);
  } catch (err) {
    throw new FirewallError(`cannot resolve the control plane host of ${controlUrl}: ${(err as Error).message}`, {
      cause: err,
      hint: 'check DNS on this host, or give --control-url with an IP address',
    });
  }
}

/**
 * Start-up of a relay node: host key, enrollment (first start only), then the relay itself.
 * Throws EnrollmentError / ControlError for the caller to report.
 */
export async function bootRelay(
  config: Readonly<Config>,
  logger: Logger,
  /** Tests inject a fake firewall, a clock, a shorter control-plane timeout and an egress dialer. */
  overrides: { firewall?: Firewall; clock?: Clock; controlTimeoutMs?: number; version?: string; egressDial?: Dialer } = {},
): Promise<BootedRelay> {
  // The egress lock before anything else: a relay that cannot close its egress must not
  // enroll or listen (and the chain is closed before the first outbound connection).
  const firewall = overrides.firewall ?? createFirewall(config);
  const base = await resolveEgressBase(config.controlUrl);
  await firewall.init(base);
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  if (config.insecureWarning) logger.warn(config.insecureWarning, { control_url: config.controlUrl });
  // The pin given now, else the one stored at enrollment: the control plane is verified from the
  // first request on (no trust on first use).
  const stored = await readNodeState(config.dataDir);
  const caPin = config.trust.caPin ?? (config.trust.caFile ? undefined : stored?.ca_pin);
  const credential: { token?: string } = {};
  const control = createControlClient({
    baseUrl: config.controlUrl,
    trust: { caFile: config.trust.caFile, caPin },
    nodeToken: () => credential.token,
    version: overrides.version ?? TUNNEL_VERSION,
    ...(overrides.controlTimeoutMs ? { timeoutMs: overrides.controlTimeoutMs } : {}),
  });
  const hostKey = await loadOrCreateHostKey(config.dataDir, logger);
  const state = await ensureEnrolled({
    dataDir: config.dataDir,
    controlUrl: config.controlUrl,
    enrollToken: config.enrollToken,
    advertise: config.advertise,
    hostKeyLine: hostKey.publicKeyLine,
    caPin: config.trust.caPin,
    control,
    logger,
  });
  credential.token = state.node_token;
  const relay = createRelay({
    config,
    clock: overrides.clock ?? systemClock,
    ids: randomIds,
    logger,
    control,
    identity: { nodeId: state.node_id, issuer: state.issuer, hostKey: hostKey.pem },
    version: overrides.version ?? TUNNEL_VERSION,
    firewall,
    egressBase: async () => base,
    egressDial: overrides.egressDial,
    ...(config.testFaults.length > 0 ? { injectFault: createFaultInjector(config.testFaults) } : {}),
  });
  const addrs = await relay.start();
  return {
    relay,
    state,
    hostKeyLine: hostKey.publicKeyLine,
    control,
    addrs,
    async stop() {
      await relay.stop();
      await control.close();
    },
  };
}
