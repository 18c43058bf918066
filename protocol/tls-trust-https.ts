import type { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect, type ConnectionOptions } from 'node:tls';
import { http as nodeHttp } from '../shared/node-http.js';
import { checkPeerPin, trustTls, type TrustSettings } from './tls-trust.js';

/**
 * node:https agents for trust settings (protocol/tls-trust.ts): the relay's control-plane client
 * uses these rather than undici, which would cost the idle relay about 8 MB of RSS for a few JSON
 * calls a minute (issue 11). The same semantics as the CLI's undici connector (tls-trust-undici.ts):
 * - system CAs (Node's store plus NODE_EXTRA_CA_CERTS), or only the CA file's certificates;
 * - with a pin, no chain or name check, and the connection is handed to the HTTP client only
 *   after the handshake showed the pinned key: with any other key the socket is destroyed and
 *   the request fails with TLS_PIN_MISMATCH before a byte of it was written. No session is
 *   resumed, so every connection shows its certificate.
 * Connections are kept alive between calls (heartbeats, the revocation long poll).
 */
export interface TrustAgents {
  /** The agent for a URL's protocol. */
  for(url: URL): HttpAgent;
  destroy(): void;
}

class PinnedAgent extends HttpsAgent {
  constructor(
    options: AgentOptions,
    private readonly tls: ConnectionOptions,
    private readonly pin: string,
    private readonly connectTimeoutMs: number,
  ) {
    super(options);
  }

  /** Node's Agent accepts a socket through the callback (node/lib/_http_agent.js createSocket). */
  override createConnection(options: ConnectionOptions, oncreate: (err: Error | null, socket?: Duplex) => void): undefined {
    const socket = connect({ ...options, ...this.tls, session: undefined });
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.off('secureConnect', onSecure);
      socket.destroy();
      oncreate(err);
    };
    const timer = setTimeout(() => fail(Object.assign(new Error(`TLS connect timed out after ${this.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' })), this.connectTimeoutMs);
    const onSecure = () => {
      clearTimeout(timer);
      socket.off('error', fail);
      const refused = checkPeerPin(socket, this.pin);
      if (refused) {
        socket.destroy();
        return oncreate(refused);
      }
      oncreate(null, socket);
    };
    socket.once('error', fail);
    socket.once('secureConnect', onSecure);
    return undefined;
  }
}

/** Agents for these trust settings; throws TrustError (bad pin, unreadable CA file, both given). */
export function trustAgents(trust: TrustSettings, connectTimeoutMs: number): TrustAgents {
  const { tls, pin } = trustTls(trust);
  const base: AgentOptions = { keepAlive: true };
  const https = pin === undefined ? new HttpsAgent({ ...base, ...tls }) : new PinnedAgent({ ...base, maxCachedSessions: 0 }, tls, pin, connectTimeoutMs);
  const http = new nodeHttp.Agent(base);
  return {
    for: (url) => (url.protocol === 'https:' ? https : http),
    destroy: () => {
      https.destroy();
      http.destroy();
    },
  };
}
