import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { noopLogger, type Logger } from './logger.js';
import { http } from './node-http.js';

export type HealthDetail = 'off' | 'loopback' | 'all';

export interface HealthSource {
  /**
   * The /healthz body; `ok: false` answers 503. `detail` adds what only operators should see
   * (node id, exposure names, lease ids): `/healthz?detail=1`, allowed by `detailFrom`. Absent:
   * no /healthz on this port (404), as on the control plane's metrics port, whose health is
   * answered by its API.
   */
  health?(opts?: { detail?: boolean }): { ok: boolean } & Record<string, unknown>;
  /** The /metrics body (Prometheus text format). */
  metrics(): string;
}

const isLoopback = (addr: string | undefined) => addr !== undefined && (/^127\./.test(addr) || addr === '::1' || /^::ffff:127\./.test(addr));

/**
 * `/healthz` (JSON) and `/metrics` (Prometheus) on a metrics port: the relay's and the control
 * plane's (`--metrics-listen`). Plain HTTP, GET and HEAD only (405 otherwise), 404 for any other
 * path, 10 s for a request's headers and body. When `health()` or `metrics()` throws, the answer
 * is a 500 with a constant body (a probe must see the process as unhealthy, not a hung or reset
 * connection) and the error is logged.
 */
export function createHealthServer(
  source: HealthSource,
  detailFrom: HealthDetail = 'loopback',
  logger: Logger = noopLogger,
): { listen(host: string, port: number): Promise<AddressInfo>; close(): Promise<void> } {
  const server: Server = http.createServer((req, res) => {
    try {
      answer(req, res);
    } catch (err) {
      logger.error('health endpoint failed', { path: (req.url ?? '/').split('?')[0], err });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end('internal error\n');
    }
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  function answer(req: IncomingMessage, res: ServerResponse): void {
    const [path, query = ''] = (req.url ?? '/').split('?');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz' && source.health) {
      const detail = new URLSearchParams(query).get('detail') === '1';
      if (detail && !(detailFrom === 'all' || (detailFrom === 'loopback' && isLoopback(req.socket.remoteAddress)))) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end(`/healthz?detail=1 is not served to this address (--health-detail ${detailFrom})\n`);
        return;
      }
      const body = source.health({ detail });
      res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
      return;
    }
    if (path === '/metrics') {
      const text = source.metrics(); // before writeHead: a throw must still be able to answer 500
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' }).end(text);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
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
