import { skipUnusedSsh2Parts } from './startup-memory.js';

/**
 * The first module tunnel-node loads (node/main.ts imports it before anything else, so this runs
 * before ssh2 and the rest are loaded): see node/startup-memory.ts.
 */
skipUnusedSsh2Parts();
