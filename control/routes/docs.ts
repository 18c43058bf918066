import { html, raw } from 'hono/html';
import type { App } from '../http/env.js';
import { API_LEVEL, API_LEVEL_MIN, API_LEVEL_UNSTATED, TUNNEL_VERSION } from '../../protocol/api-level.js';

const INFO = {
  openapi: '3.1.0',
  info: {
    title: 'Tunnel control plane API',
    version: TUNNEL_VERSION,
    description: `Accounts, exposures, relay nodes and short-lived leases carried in OpenSSH certificates. Errors are RFC 9457 problem+json with a stable \`code\` and the \`request_id\`. Relays and the CLI send \`Tunnel-Api: N\`, their API level, with every request: this control plane serves levels ${API_LEVEL_MIN} to ${API_LEVEL} (a request without the header is level ${API_LEVEL_UNSTATED}) and answers any other with 400 \`API_LEVEL_UNSUPPORTED\` before reading the request.`,
  },
};

type Op = { summary?: string; description?: string; tags?: string[]; security?: unknown[]; requestBody?: unknown; parameters?: unknown; responses?: unknown };

/** `/openapi.json` (generated from the same zod schemas that validate requests) and a `/docs` page rendered from it. */
export function registerDocs(app: App): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'Access token from POST /v1/auth/token',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'nodeToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'Relay node credential from POST /v1/nodes/enroll',
  });

  let cached: ReturnType<App['getOpenAPI31Document']> | undefined;
  const document = () => (cached ??= app.getOpenAPI31Document(INFO));

  app.get('/openapi.json', (c) => c.json(document()));

  app.get('/docs', (c) => {
    const doc = document();
    const ops = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
      Object.entries(item as Record<string, Op>).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
    );
    const tags = [...new Set(ops.map((o) => o.op.tags?.[0] ?? 'other'))];
    c.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'");
    return c.html(html`<!doctype html>
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <title>${INFO.info.title}</title>
          <style>
            body { font: 15px system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
            code, pre { font: 13px ui-monospace, monospace; } pre { background: #f5f5f5; padding: 0.6rem; overflow: auto; }
            .m { display: inline-block; min-width: 4rem; font-weight: bold; } details { margin: 0.3rem 0 1rem 4rem; }
          </style>
        </head>
        <body>
          <h1>${INFO.info.title}</h1>
          <p>${INFO.info.description} The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</p>
          ${tags.map(
            (t) => html`<h2>${t}</h2>
              ${ops
                .filter((o) => (o.op.tags?.[0] ?? 'other') === t)
                .map(
                  (o) => html`<div>
                    <span class="m">${o.method}</span><code>${o.path}</code> ${o.op.summary ?? ''}
                    ${o.op.security?.length ? html` <small>(authenticated)</small>` : ''}
                    <details>
                      <summary>schema</summary>
                      ${o.op.description ? html`<p>${o.op.description}</p>` : ''}
                      <pre>${raw(escapeHtml(JSON.stringify({ parameters: o.op.parameters, requestBody: o.op.requestBody, responses: o.op.responses }, null, 2)))}</pre>
                    </details>
                  </div>`,
                )}`,
          )}
        </body>
      </html>`);
  });
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
