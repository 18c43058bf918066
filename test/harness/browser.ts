/**
 * A real Chromium (Debian's `chromium` package) driven by playwright-core, for the console's
 * browser tests: launch, accessibility check with axe-core inside the page, screenshots at
 * desktop and phone width.
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** The browser binary: $CHROMIUM_PATH or the first of the usual paths; fails with how to install it. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const list = env.CHROMIUM_PATH ? [env.CHROMIUM_PATH] : CANDIDATES;
  for (const p of list) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  throw new Error(`no Chromium found at ${list.join(', ')}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
}

export async function launchBrowser(): Promise<Browser> {
  // --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/**
 * Runs axe-core inside the page (evaluated through the debugging protocol, so the page's CSP
 * does not block it) and returns the serious and critical violations.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  const require = createRequire(import.meta.url);
  const source = (require('axe-core') as { source: string }).source;
  await page.evaluate(source);
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<{ violations: AxeViolation[] }> } }).axe;
    const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;

/** Full-page screenshots of the current page at desktop and phone width into `dir`. */
export async function screenshots(page: Page, dir: string, name: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const before = page.viewportSize();
  const files: string[] = [];
  for (const [label, size] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(size);
    await page.reload(); // a fresh layout at this width (a resized page can keep the old document size)
    const file = join(dir, `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    files.push(file);
  }
  if (before) await page.setViewportSize(before);
  return files;
}
