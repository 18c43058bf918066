#!/bin/sh
//bin/sh -c :; exec node --single-threaded --no-maglev "$0" "$@"
// Run as a program (`tunnel-node`), the line above is read by sh, which runs node with the relay's
// node flags (node/node-flags.ts, which says why); node and tsc read it as a comment. Not
// `#!/usr/bin/env -S node ...`: BusyBox's env (Alpine) has no -S.
// First, before ssh2 and the rest load: what an idle relay keeps from its start (node/startup-memory.ts).
import './start-lean.js';
import { bootRelay, firewallStartMessage } from './boot.js';
import { ConfigError, parseConfig } from './config.js';
import { ControlError } from './control-client.js';
import { FirewallError } from './egress/firewall.js';
import { TrustError } from '../protocol/tls-trust.js';
import { EnrollmentError } from './enrollment.js';
import { createJsonLogger } from '../shared/logger.js';
import { installProcessGuard } from './process-guard.js';
import { collectStartupGarbage, STARTUP_COLLECTION_DELAY_MS } from './startup-memory.js';

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
  if (config.insecureWarning) process.stderr.write(`tunnel-node: ${config.insecureWarning}\n`);
  const logger = createJsonLogger((line) => process.stderr.write(line), { component: 'tunnel-node' });
  let booted;
  try {
    booted = await bootRelay(config, logger);
  } catch (err) {
    if (err instanceof EnrollmentError || err instanceof ControlError) {
      logger.error('enrollment failed', { code: err.code, err: err.message, problemCode: err instanceof ControlError ? err.opts.problemCode : undefined });
      process.stderr.write(`tunnel-node: ${err.message}\n`);
      return err instanceof ControlError && err.code === 'CONTROL_UNREACHABLE' ? 5 : 1;
    }
    // The CA file cannot be read (missing, over 4 MiB, a pipe): a setting to fix, as a bad flag is.
    if (err instanceof TrustError) {
      logger.error('control plane trust unusable', { code: err.code, err: err.message });
      process.stderr.write(`tunnel-node: ${err.message}\n`);
      return 2;
    }
    if (err instanceof FirewallError) {
      logger.error('egress lock unavailable', { code: err.code, err: err.message });
      process.stderr.write(`tunnel-node: ${firewallStartMessage(err)}\n`);
      return 1;
    }
    throw err;
  }
  // A bug in one connection must not end every tunnel on this node (node/process-guard.ts).
  installProcessGuard({
    logger,
    absorb: (err, origin) => booted.relay.absorbUncaught(err, origin),
    maxUnattributed: 5,
    windowMs: 60_000,
    exit: (code) => process.exit(code),
  });
  // A machine-readable line for supervisors and tests.
  process.stdout.write(`${JSON.stringify({ ready: true, ssh: booted.addrs.ssh, metrics: booted.addrs.metrics, node_id: booted.state.node_id })}\n`);

  const signalled = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info('signal received; shutting down', { signal });
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // What start-up left behind goes once the relay has been ready a while, not whenever V8's
  // memory reducer happens to run (node/startup-memory.ts).
  setTimeout(() => {
    const collected = collectStartupGarbage();
    logger.info('start-up garbage collected', {
      heap_used_before_mb: Math.round(collected.heapUsedBefore / 1e5) / 10,
      heap_used_after_mb: Math.round(collected.heapUsedAfter / 1e5) / 10,
      ms: Math.round(collected.ms),
    });
  }, STARTUP_COLLECTION_DELAY_MS).unref();
  await signalled;
  await booted.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tunnel-node: internal error, please report: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
