import { lookup as dnsLookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { BaseRules } from './rules.js';

export type Lookup = (host: string) => Promise<string[]>;

/** All addresses of a name, as getaddrinfo (and so /etc/hosts) answers. */
export const systemLookup: Lookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** `nameserver` addresses from resolv.conf text (IP literals only; a zone suffix is dropped). */
export function parseResolvConf(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const addr = m?.[1]?.split('%')[0];
    if (addr && isIP(addr)) out.add(addr);
  }
  return [...out];
}

/**
 * The chain's base rules for a control URL (or a comma-separated list of replicas): each host's
 * addresses and port. When a host is a name (resolved now, at start), the resolvers in
 * resolv.conf are allowed too, so later lookups of the control plane keep working.
 */
export async function resolveBaseRules(
  controlUrl: string,
  deps: { lookup?: Lookup; readResolvConf?: () => Promise<string> } = {},
): Promise<BaseRules> {
  const control: { address: string; port: number }[] = [];
  let names = false;
  for (const one of controlUrl.split(',')) {
    const url = new URL(one);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const addresses = isIP(host) ? [host] : await (deps.lookup ?? systemLookup)(host);
    if (!isIP(host)) names = true;
    for (const address of new Set(addresses)) {
      if (!control.some((c) => c.address === address && c.port === port)) control.push({ address, port });
    }
  }
  if (!names) return { control, dns: [] };
  const resolv = await (deps.readResolvConf ?? (() => readFile('/etc/resolv.conf', 'utf8')))().catch(() => '');
  return { control, dns: parseResolvConf(resolv) };
}
