#!/usr/bin/env node
/**
 * All-in-one on loopback: the control plane (embedded database) and one relay node in one
 * process, for a first look and for development. The relay's egress lock is off here (it would
 * need root and would lock this host's own egress); production relays run tunnel-node.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadControlConfig } from '../../control/config.js';
import { createJsonLogger } from '../../shared/logger.js';
import { startControl } from '../../control/server.js';
import { createEnrollmentToken } from '../../control/services/enrollment.js';
import { parseConfig } from '../../node/config.js';
import { bootRelay } from '../../node/boot.js';
import { allInOneDataDir } from './data-dir.js';

const USAGE = `Usage: npm start [-- --data-dir DIR] [--listen 127.0.0.1:8080] [--relay-listen 127.0.0.1:2222] [--metrics-listen 127.0.0.1:9090]

Starts the Tunnel control plane (embedded database in DIR/control) and one relay node
(DIR/node) on loopback. DIR defaults to ~/.local/share/tunnel (TUNNEL_DATA_DIR).
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      'data-dir': { type: 'string' },
      listen: { type: 'string' },
      'relay-listen': { type: 'string' },
      'metrics-listen': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const dataDir = allInOneDataDir(values['data-dir'], process.env);
  const controlCfg = loadControlConfig(['--data-dir', join(dataDir, 'control'), '--listen', values.listen ?? '127.0.0.1:8080'], {
    ...process.env,
    TUNNEL_DATA_DIR: undefined,
  });
  const log = createJsonLogger((line) => process.stderr.write(line), { component: 'control' });
  const control = await startControl(controlCfg, log);

  // The local relay enrolls once with a token made right here; later starts reuse its identity.
  const enrolled = existsSync(join(dataDir, 'node', 'node.json'));
  const token = enrolled ? undefined : (await createEnrollmentToken(control.deps, null, 'local', 600)).token;
  const relayArgs = [
    '--control-url',
    controlCfg.publicUrl,
    '--data-dir',
    join(dataDir, 'node'),
    '--listen',
    values['relay-listen'] ?? '127.0.0.1:2222',
    '--metrics-listen',
    values['metrics-listen'] ?? '127.0.0.1:9090',
    // Said explicitly: the egress lock would need root and would filter this host's own traffic.
    '--egress-driver',
    'off',
    ...(token ? ['--enroll-token', token] : []),
    // A non-loopback --listen serves HTTPS with its own certificate: the relay trusts its pin.
    ...(control.tls() ? ['--ca-pin', control.tls()!.pin] : []),
  ];
  const parsed = parseConfig(relayArgs, {});
  if (parsed.kind !== 'run') throw new Error('unreachable');
  const relay = await bootRelay(parsed.config, createJsonLogger((line) => process.stderr.write(line), { component: 'tunnel-node' }));

  const url = controlCfg.publicUrl;
  const setup = control.setupCode
    ? `  1. Create the first admin (the setup code works once):
       curl -sS ${control.tls() ? `--cacert ${control.tls()!.certFile} ` : ''}-X POST ${url}/v1/setup -H 'content-type: application/json' \\
         -d '{"setup_code":"${control.setupCode}","name":"admin","password":"<12+ characters>"}'
`
    : `  1. (An admin exists already.)
`;
  process.stderr.write(`
Tunnel is running (all-in-one on loopback; data in ${dataDir}):
  control plane  ${url}   (API reference: ${url}/docs)
  relay          ${relay.state.name} at ${parsed.config.advertise}   (health: http://${values['metrics-listen'] ?? '127.0.0.1:9090'}/healthz)

Next:
${setup}  2. Log in:                     node dist/cli/main.js login --server ${url} --password --user admin${control.tls() ? ` --ca-pin ${control.tls()!.pin}` : ''}
  3. On X, publish a service:    node dist/cli/main.js expose 22 --name hostx-ssh
  4. On Y, reach it:             ssh -o ProxyCommand='node dist/cli/main.js open --stdio %h' you@hostx-ssh
                                 (or: node dist/cli/main.js open hostx-ssh --listen 127.0.0.1:2200)
Ctrl-C stops both.
`);
  process.stdout.write(`${JSON.stringify({ ready: true, control: url, relay: parsed.config.advertise })}\n`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await relay.stop();
  await control.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // Bad flags (parseArgs' ERR_PARSE_ARGS_* errors, ConfigError) are usage errors: one line and
    // exit 2; anything else (a port in use) one line and exit 1. Never a stack trace.
    const usage = err instanceof ConfigError || (err instanceof Error && String((err as NodeJS.ErrnoException).code ?? '').startsWith('ERR_PARSE_ARGS_'));
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`tunnel all-in-one: ${message}${usage ? ' (npm start -- --help lists the options)' : ''}\n`);
    process.exit(usage ? 2 : 1);
  },
);
