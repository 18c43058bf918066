#!/usr/bin/env node
import { mkdir } from 'node:fs/promises';
import { ConfigError, parseConfig } from './config.js';
import { ControlError, createControlClient } from './control-client.js';
import { randomIds, systemClock } from './deps.js';
import { EnrollmentError, ensureEnrolled, loadOrCreateHostKey } from './enrollment.js';
import { createJsonLogger } from './logger.js';
import { createRelay } from './relay.js';

const VERSION = '0.1.0';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tunnel-node: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return 0;
  }
  const config = parsed.config;
  const logger = createJsonLogger((line) => process.stderr.write(line), { component: 'tunnel-node' });
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });

  const credential: { token?: string } = {};
  const control = createControlClient({ baseUrl: config.controlUrl, nodeToken: () => credential.token });
  const hostKey = await loadOrCreateHostKey(config.dataDir, logger);
  let state;
  try {
    state = await ensureEnrolled({
      dataDir: config.dataDir,
      controlUrl: config.controlUrl,
      enrollToken: config.enrollToken,
      advertise: config.advertise,
      hostKeyLine: hostKey.publicKeyLine,
      control,
      logger,
    });
  } catch (err) {
    if (err instanceof EnrollmentError || err instanceof ControlError) {
      logger.error('enrollment failed', { code: err.code, err: err.message, problemCode: err instanceof ControlError ? err.opts.problemCode : undefined });
      process.stderr.write(`tunnel-node: ${err.message}\n`);
      return err instanceof ControlError && err.code === 'CONTROL_UNREACHABLE' ? 5 : 1;
    }
    throw err;
  }
  credential.token = state.node_token;

  const relay = createRelay({
    config,
    clock: systemClock,
    ids: randomIds,
    logger,
    control,
    identity: { nodeId: state.node_id, issuer: state.issuer, hostKey: hostKey.pem },
    version: VERSION,
  });
  const addrs = await relay.start();
  // A machine-readable line for supervisors and tests.
  process.stdout.write(`${JSON.stringify({ ready: true, ssh: addrs.ssh, metrics: addrs.metrics, node_id: state.node_id })}\n`);

  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info('signal received; shutting down', { signal });
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await relay.stop();
  await control.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tunnel-node: internal error, please report: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
