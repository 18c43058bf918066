import { isIPv6 } from 'node:net';

/**
 * The key a source address is counted under by per-source limits: IPv4 as is, IPv6 by its /64
 * (one host commonly holds a whole /64, a home line's or a cloud VM's, as OpenSSH's
 * PerSourceNetBlockSize default assumes), an IPv4-mapped IPv6 address as its IPv4 address. The
 * relay's startup caps (node/startups.ts) and the control plane's per-source rate limits
 * (control/http/client-address.ts) count the same way.
 */
export function sourceKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1] as string;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
