import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthSource {
  /** The /healthz body; `ok: false` answers 503. */
  health(): { ok: boolean } & Record<string, unknown>;
  /** The /metrics body (Prometheus text format). */
  metrics(): string;
}

/** `/healthz` (JSON) and `/metrics` (Prometheus) on the metrics port. */
export function createHealthServer(source: HealthSource): { listen(host: string, port: number): Promise<AddressInfo>; close(): Promise<void> } {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      const body = source.health();
      res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
      return;
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(source.metrics());
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
