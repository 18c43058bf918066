import { BlockList, isIP } from 'node:net';
import type { Context } from 'hono';
import type { AppEnv } from './env.js';
import { sourceKey } from '../../shared/source-key.js';

/**
 * Which proxies in front of the control plane may say who the client is, through
 * `X-Forwarded-For` (`--trust-proxy`): a number of hops (`1`: one load balancer; its view of the
 * client is the last entry) or a list of networks (`10.0.0.0/8,127.0.0.1`: every address in them
 * is a proxy). 0 or an empty list trusts none, and the socket's peer is the client.
 */
export type TrustProxy = number | readonly string[];

const MAX_HOPS = 32;

/**
 * The caller's address for rate limiting and audit. Walks from the socket's peer back through
 * `X-Forwarded-For`, right to left, while the address at hand is a trusted proxy; the first one
 * that is not is the client (as nginx's `real_ip_recursive` and Express's `trust proxy` do). The
 * leftmost entries are whatever the client wrote, so they count only when every hop after them
 * is trusted.
 */
export function clientAddress(c: Context<AppEnv>): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  const peer = normalizeAddress(env?.incoming?.socket?.remoteAddress ?? '') ?? 'unknown';
  return clientFrom(peer, c.req.header('x-forwarded-for'), c.get('deps').settings.trustProxy);
}

/**
 * What per-source rate limits count (login, device authorization, service-token grant, setup,
 * enrollment): the client's IPv4 address, or the /64 of its IPv6 address (shared/source-key.ts).
 * Counting each IPv6 address apart would let one host rotate through its /64 and never meet a
 * per-source limit.
 */
export function clientSource(c: Context<AppEnv>): string {
  return sourceKey(clientAddress(c));
}

/** The client given the socket's peer and the `X-Forwarded-For` header (left to right, as sent). */
export function clientFrom(peer: string, xff: string | undefined, trust: TrustProxy): string {
  if (!xff || trust === 0 || (Array.isArray(trust) && trust.length === 0)) return peer;
  return pickClient([peer, ...xff.split(',').slice(-MAX_HOPS).reverse()], trust);
}

/** `chain[0]` is the socket's peer; each next entry is the address the one before it saw. */
export function pickClient(chain: readonly string[], trust: TrustProxy): string {
  const isTrusted = typeof trust === 'number' ? (_a: string, i: number) => i < trust : trustedNetworks(trust);
  let current = chain[0]!;
  for (let i = 0; i < chain.length - 1; i++) {
    if (!isTrusted(current, i)) return current;
    const seen = normalizeAddress(chain[i + 1]!);
    // A trusted proxy that forwarded garbage: the proxy itself is as far as we can see.
    if (!seen) return current;
    current = seen;
  }
  return current;
}

/** An IP address as a proxy may write it (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::ffff:1.2.3.4`), or null. */
export function normalizeAddress(raw: string): string | null {
  let a = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(a);
  if (mapped) a = mapped[1]!;
  return isIP(a) ? a.toLowerCase() : null;
}

const lists = new WeakMap<readonly string[], BlockList>();

function trustedNetworks(networks: readonly string[]): (address: string) => boolean {
  let list = lists.get(networks);
  if (!list) {
    list = new BlockList();
    for (const n of networks) {
      const [addr, prefix] = parseNetwork(n);
      const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      list.addSubnet(addr, prefix, family);
    }
    lists.set(networks, list);
  }
  const l = list;
  return (address) => {
    const family = isIP(address);
    return family !== 0 && l.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/**
 * Parses `ADDRESS[/PREFIX]`; throws with a message that says what is wrong (config.ts reports it).
 */
export function parseNetwork(text: string): [string, number] {
  const [addr = '', prefixText, extra] = text.trim().split('/');
  const family = isIP(addr);
  const max = family === 6 ? 128 : 32;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (family === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new Error(`"${text}" is not an IP address or network (ADDRESS or ADDRESS/PREFIX)`);
  }
  return [addr, prefix];
}
