#!/usr/bin/env node
import { homedir } from 'node:os';
import { run } from './run.js';

const controller = new AbortController();
let signals = 0;
const onSignal = () => {
  // First signal: stop cleanly. Second: give up at once.
  if (++signals > 1) process.exit(130);
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// OpenSSH ends its ProxyCommand (`tunnel open --stdio`) with SIGHUP when the session is over;
// stop cleanly then too, so the lease is revoked rather than left active until it expires.
process.on('SIGHUP', onSignal);

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  homeDir: homedir(),
  stopSignal: controller.signal,
});
process.exit(code);
