/**
 * Many idle ssh2 connections from this one process, each holding a `tcpip-forward`: the shape
 * of a relay full of exposures with no traffic.
 */
import type { Client } from 'ssh2';

/** Runs `fn` over `items` with at most `limit` in flight; rejects on the first failure. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** `tcpip-forward` on a connected client; resolves with the bound port. */
export function forwardIn(client: Client, bindAddr: string, bindPort: number): Promise<number> {
  return new Promise((resolve, reject) => client.forwardIn(bindAddr, bindPort, (err, port) => (err ? reject(err) : resolve(port))));
}

/** Ends every client and waits (bounded) until each has closed. */
export async function closeAll(clients: readonly Client[], timeoutMs = 10_000): Promise<void> {
  const closed = clients.map((c) => new Promise<void>((r) => c.once('close', () => r())));
  for (const c of clients) c.end();
  let t: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(closed), new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
  clearTimeout(t);
  for (const c of clients) c.destroy();
}
