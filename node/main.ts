#!/usr/bin/env node
// First, before anything else loads: V8's optimizing compilers are held until the relay is ready
// (node/startup-tiering.ts; this module imports only node:v8 before it), then what an idle relay
// keeps from its start (node/start-lean.ts, before ssh2 and the rest load). The rest is imported
// only after both, so the hold covers Node resolving and linking the relay's modules too.
import { holdStartupTiering } from './startup-tiering.js';

const startupTiering = holdStartupTiering({ execArgv: process.execArgv, nodeOptions: process.env.NODE_OPTIONS });
await import('./start-lean.js');
const { runRelay } = await import('./relay-main.js');
runRelay(startupTiering);
