import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { httpCaller, type ApiCall } from '../../test/harness/control.js';
import type { TestApp } from './test-app.js';

export interface ServedApp {
  /** Base URL on 127.0.0.1 (the socket's peer of every call is 127.0.0.1). */
  url: string;
  /** JSON calls over real HTTP, same shape as `TestApp.call`. */
  call: ApiCall;
  close(): Promise<void>;
}

/** Serves a test app over real HTTP on 127.0.0.1 and a free port, as `tunnel-control` serves it. */
export async function serveTestApp(t: TestApp): Promise<ServedApp> {
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: t.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    s.once('error', reject);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    call: httpCaller(url),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}
