import { createRequire } from 'node:module';
import type * as NodeHttp from 'node:http';

/**
 * node:http, loaded with require rather than `import` (for the relay's idle footprint, issue 11).
 * An ES import of a built-in module builds its ES facade, which reads every export; on Node 22
 * and later node:http's exports include the lazy getters WebSocket, CloseEvent and MessageEvent,
 * and reading them loads Node's bundled undici with http2, zlib, tls and perf_hooks: 11 MB more
 * RSS on Node 22, 14 MB on Node 24, for a process that never uses them (Node 20 has no such
 * getters). require returns the same module without reading its exports. The relay's files
 * import node:http only through here (eslint.config.js forbids a value import of node:http in
 * node/, shared/ and protocol/); types may still be imported directly.
 */
export const http: typeof NodeHttp = createRequire(import.meta.url)('node:http') as typeof NodeHttp;
