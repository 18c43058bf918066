import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { createControlClient, type ControlClient } from './control-client.js';
import { randomIds, systemClock } from './deps.js';
import { ensureEnrolled, loadOrCreateHostKey, type NodeState } from './enrollment.js';
import type { Logger } from './logger.js';
import { createRelay, type Relay } from './relay.js';

export const NODE_VERSION = '0.1.0';

export interface BootedRelay {
  relay: Relay;
  state: NodeState;
  control: ControlClient;
  addrs: { ssh: AddressInfo; metrics: AddressInfo };
  /** Graceful stop: drain the relay, then close the control client. */
  stop(): Promise<void>;
}

/**
 * Start-up of a relay node: host key, enrollment (first start only), then the relay itself.
 * Throws EnrollmentError / ControlError for the caller to report.
 */
export async function bootRelay(config: Readonly<Config>, logger: Logger): Promise<BootedRelay> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const credential: { token?: string } = {};
  const control = createControlClient({ baseUrl: config.controlUrl, nodeToken: () => credential.token });
  const hostKey = await loadOrCreateHostKey(config.dataDir, logger);
  const state = await ensureEnrolled({
    dataDir: config.dataDir,
    controlUrl: config.controlUrl,
    enrollToken: config.enrollToken,
    advertise: config.advertise,
    hostKeyLine: hostKey.publicKeyLine,
    control,
    logger,
  });
  credential.token = state.node_token;
  const relay = createRelay({
    config,
    clock: systemClock,
    ids: randomIds,
    logger,
    control,
    identity: { nodeId: state.node_id, issuer: state.issuer, hostKey: hostKey.pem },
    version: NODE_VERSION,
  });
  const addrs = await relay.start();
  return {
    relay,
    state,
    control,
    addrs,
    async stop() {
      await relay.stop();
      await control.close();
    },
  };
}
