#!/usr/bin/env node
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { ConfigError, CONTROL_USAGE, loadControlConfig } from './config.js';
import { createJsonLogger } from '../shared/logger.js';
import { buildDeps, openDb, startControl } from './server.js';
import { writeNewMasterKey } from './keys/master-key.js';
import type { RunningControl } from './server.js';
import { createUser } from './services/users.js';
import { AppError } from './lib/errors.js';
import { isSelfSignedLeaf } from './tls/server-tls.js';

const logger = createJsonLogger((line) => process.stderr.write(line), { component: 'control' });

async function main(): Promise<number> {
  const cfg = loadControlConfig(process.argv.slice(2), process.env, () => readFileSync(0, 'utf8'));
  if (cfg.command === 'help') {
    process.stdout.write(CONTROL_USAGE);
    return 0;
  }
  if (cfg.command === 'gen-master-key') {
    writeNewMasterKey(cfg.masterKeyOut!);
    process.stdout.write(`wrote a new master key to ${cfg.masterKeyOut} (mode 0600); keep a copy somewhere safe\n`);
    return 0;
  }
  if (cfg.command === 'rotate-keys' || cfg.command === 'create-user') {
    const opened = await openDb(cfg);
    try {
      const deps = buildDeps(cfg, opened, logger);
      if (cfg.command === 'rotate-keys') {
        const sig = await deps.keys.rotate('sig');
        const ca = await deps.keys.rotate('ssh-ca');
        process.stdout.write(`published new keys ${sig} and ${ca}; they start signing in 15 minutes\n`);
      } else {
        try {
          await createUser(deps, deps.db, { name: cfg.userName!, role: cfg.userRole!, password: cfg.userPassword! }, { actor: null });
        } catch (err) {
          if (err instanceof AppError && err.code === 'ALREADY_EXISTS') throw new ConfigError(`user "${cfg.userName}" already exists`);
          throw err;
        }
        process.stdout.write(`created ${cfg.userRole} ${cfg.userName}\n`);
      }
      return 0;
    } finally {
      await opened.close();
    }
  }

  if (cfg.tls.mode === 'off' && cfg.tls.warn) {
    process.stderr.write(
      `\nWARNING: --tls off on ${cfg.listenHost}, a non-loopback address: passwords, tokens and the keys relays trust cross the network in plain text. Only do this behind a TLS-terminating proxy on a private network.\n\n`,
    );
    logger.warn('serving plain HTTP on a non-loopback address', { listen: cfg.listenHost });
  }
  const control = await startControl(cfg, logger);
  const tls = control.tls();
  if (tls) {
    process.stderr.write(
      `\nTLS certificate ${tls.certFile}\n` +
        `  pin (relays and the CLI verify this server with --ca-pin):\n  ${tls.pin}\n`,
    );
  }
  if (control.setupCode) {
    // The bootstrap secret is printed once, on purpose, and never logged as a field.
    // A self-signed certificate (made here, or the operator's own in --tls-cert) is not in curl's CAs.
    const cacert = tls && isSelfSignedLeaf(tls.cert) ? `--cacert ${tls.certFile} ` : '';
    process.stderr.write(
      `\nNo users yet. Create the first admin with this one-time setup code (valid for 24 hours, on any replica;\n` +
        `every replica that starts before the first admin exists prints its own, and any one of them works once):\n\n` +
        `  curl -sS ${cacert}-X POST ${cfg.publicUrl}/v1/setup -H 'content-type: application/json' \\\n` +
        `    -d '{"setup_code":"${control.setupCode}","name":"admin","password":"<at least 12 characters>"}'\n\n` +
        `(or: tunnel-control create-user admin --admin with TUNNEL_PASSWORD set)\n\n`,
    );
  }
  process.stderr.write(`Tunnel control plane ready at ${cfg.publicUrl} (API docs: ${cfg.publicUrl}/docs)\n`);
  const stopWatching = watchTls(control);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  stopWatching();
  await control.close();
  return 0;
}

/** Reloads the certificate on SIGHUP and when its file changes (checked every 10 s). */
function watchTls(control: RunningControl): () => void {
  const tls = control.tls();
  if (!tls) return () => undefined;
  const reload = (why: string) => {
    try {
      control.reloadTls();
    } catch (err) {
      logger.error('TLS reload failed; still serving the previous certificate', { why, err: (err as Error).message });
    }
  };
  const onHup = () => reload('SIGHUP');
  process.on('SIGHUP', onHup);
  const onChange = (cur: { mtimeMs: number }, prev: { mtimeMs: number }) => {
    if (cur.mtimeMs !== prev.mtimeMs) reload('file changed');
  };
  watchFile(tls.certFile, { interval: 10_000, persistent: false }, onChange);
  return () => {
    process.off('SIGHUP', onHup);
    unwatchFile(tls.certFile, onChange);
  };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`tunnel-control: ${err.message}\n`);
      process.exit(2);
    }
    logger.error('fatal error at start', { err });
    process.stderr.write(`tunnel-control: ${(err as Error).message ?? String(err)}\n`);
    process.exit(1);
  },
);
