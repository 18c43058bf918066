import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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
  ]);
}

/** GET (or HEAD) /metrics; 404 for any other path, 405 for any other method. */
export function metricsRequestHandler(deps: Pick<Deps, 'metrics' | 'revocationHub'>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
    } else {
      const body = renderControlMetrics(deps);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    }
  };
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves /metrics on `host:port` (plain HTTP); resolves once it listens. */
export async function serveMetrics(deps: Pick<Deps, 'metrics' | 'revocationHub'>, host: string, port: number): Promise<MetricsServer> {
  const server = createServer(metricsRequestHandler(deps));
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
