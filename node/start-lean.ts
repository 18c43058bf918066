import { skipUnusedSsh2Parts } from './startup-memory.js';

/**
 * The first module tunnel-node loads (node/main.ts imports it before anything else, so this runs
 * before ssh2 and the rest are loaded): see node/startup-memory.ts.
 */
skipUnusedSsh2Parts();

/**
 * Small Buffers are not cut from Node's shared 8 KiB pool in the relay (issue 11, 40 KB per idle
 * exposure connection). A connection keeps a few small buffers for its life (ssh2's two
 * identification strings and its AES-GCM tag, the key exchange's secret in a closure of ssh2's,
 * the lease's CA key blob) and its handshake allocates about one slab's worth of pooled buffers,
 * so each idle connection held a whole 8 KiB slab alive (heap snapshots of 2000 idle exposure
 * connections: one 8192-byte slab per connection). Unpooled, a buffer of up to 64 bytes lives
 * in V8's heap, and a larger one has memory of its own (about 1 µs more to make; the relay's
 * packets of channel data are over the pool's limit anyway, node/packet-pool.ts).
 */
Buffer.poolSize = 0;
