import type * as Ssh2 from 'ssh2';
import { requireSsh2 } from './protocol.js';

/**
 * ssh2's Server and key parser, required from their own files: the relay uses nothing else of
 * ssh2's entry point (lib/index.js), which also loads its Client, agent, HTTP agents and key
 * generator, about 0.4 MB of an idle relay's RSS (issue 11, bench:footprint under load), mostly
 * their source and compiled code. `ssh2.utils.parseKey` is this same function.
 * test/node/relay-startup-memory.test.ts checks that tunnel-node does not load lib/index.js.
 */
export const Ssh2Server = requireSsh2('ssh2/lib/server.js') as typeof Ssh2.Server;
export const { parseKey } = requireSsh2('ssh2/lib/protocol/keyParser.js') as { parseKey: typeof Ssh2.utils.parseKey };

/** Whether ssh2's native crypto binding loaded (it silently falls back to pure JS). */
export function nativeCryptoAvailable(): boolean {
  try {
    return (requireSsh2('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable === true;
  } catch {
    return false;
  }
}
