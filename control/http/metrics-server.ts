import type { Logger } from '../../shared/logger.js';
import { createHealthServer } from '../../shared/health-server.js';
import type { Deps } from '../deps.js';

/**
 * The control plane's Prometheus /metrics, served apart from the API (`--metrics-listen`), and
 * not at all unless asked: its counters tell whoever reads them how many requests each route
 * answered and with what status (logins refused, tokens rejected), how many leases were issued
 * and how many relays poll this replica, so they are for the operator's scraper on loopback or a
 * private network, never the API's public port.
 */
export function renderControlMetrics(deps: Pick<Deps, 'metrics' | 'revocationHub'>): string {
  return deps.metrics.render([
    {
      name: 'tunnel_control_revocation_polls_waiting',
      help: "Relays' revocation-feed long polls this replica holds now (at most 4 per node, 10,000 in all)",
      value: deps.revocationHub.waiting,
    },
    {
      name: 'tunnel_control_revocation_listen_deaf',
      help: "1 while this replica's LISTEN hears nothing on the revocations channel (its own probe NOTIFY does not come back): relay polls are held at most 2 s",
      value: deps.revocationHub.holdCapMs === Infinity ? 0 : 1,
    },
  ]);
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics on `host:port` with the relay's metrics-port server (shared/health-server):
 * 404 for any other path (/healthz included: the API answers health), 405 for any other method,
 * 500 if rendering throws. Resolves once it listens.
 */
export async function serveMetrics(deps: Pick<Deps, 'metrics' | 'revocationHub'>, host: string, port: number, logger?: Logger): Promise<MetricsServer> {
  const server = createHealthServer({ metrics: () => renderControlMetrics(deps) }, 'off', logger);
  const address = await server.listen(host, port);
  return { port: address.port, close: () => server.close() };
}
