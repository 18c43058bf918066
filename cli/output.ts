import type { Context } from './context.js';
import { out } from './context.js';

/** Prints rows as an aligned table, or as JSON with --json. */
export function printTable(ctx: Context, json: boolean, data: unknown, headers: string[], rows: (string | number | null)[][]): void {
  if (json) {
    out(ctx, JSON.stringify(data, null, 2));
    return;
  }
  if (rows.length === 0) {
    ctx.stderr.write('(none)\n');
    return;
  }
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  for (const r of cells) out(ctx, r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.round((new Date(iso).getTime() - now) / 1000);
  const a = Math.abs(s);
  const t = a < 120 ? `${a}s` : a < 7200 ? `${Math.round(a / 60)}m` : a < 172800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return s >= 0 ? `in ${t}` : `${t} ago`;
}

/** How often tunnel expose and tunnel open --listen repeat the same reconnect line. */
export const RECONNECT_LINE_EVERY_MS = 60_000;

/**
 * For a long-running command's "disconnected; reconnecting" lines: says whether to print one. The
 * first of a kind is printed; the same again (numbers aside: "has not reported for 31 s" and "32 s"
 * are one kind) only once `everyMs` passed since it was last printed, so an exposure offline for
 * an hour is a line a minute, not one per retry. `reset()` (connected again) prints the next at once.
 */
export function repeatsQuieted(everyMs: number, now: () => number = () => performance.now()): { print(line: string): boolean; reset(): void } {
  let last: { kind: string; at: number } | undefined;
  return {
    print(line) {
      const kind = line.replace(/\d+(\.\d+)?/g, '#');
      const t = now();
      if (last && last.kind === kind && t - last.at < everyMs) return false;
      last = { kind, at: t };
      return true;
    },
    reset() {
      last = undefined;
    },
  };
}
