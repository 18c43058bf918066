import { isIP } from 'node:net';

/**
 * Pure builders for the egress lock's iptables rules (DESIGN "Egress lock"). Every iptables
 * argument and every line of `iptables-restore` input is built here and nowhere else; the
 * runner only executes what these functions return (STYLE anti-pattern 7).
 *
 * The chain, per address family:
 *
 *   -A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *   -A TUNNEL-EGRESS -d <control>/32 -p tcp -m tcp --dport <port> -m comment --comment tunnel-control -j ACCEPT
 *   -A TUNNEL-EGRESS -d <resolver>/32 -p udp -m udp --dport 53 ...          (only when the control URL is a name)
 *   -A TUNNEL-EGRESS -d <target>/32 -p tcp -m tcp [--sport a:b] --dport <port>
 *        -m time --datestop <lease exp, UTC> -m comment --comment "tunnel-lease=<id>" -j ACCEPT   (one per lease target)
 *   -A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable
 *
 * Lines are written in the order `iptables-save` prints matches, so the chain read back from
 * the kernel compares equal to what was written. The `time` match makes the kernel itself stop
 * honouring a lease rule at the lease's expiry, even if the relay is dead by then.
 */

export const EGRESS_CHAIN = 'TUNNEL-EGRESS';
export const LEASE_COMMENT_PREFIX = 'tunnel-lease=';

export type Family = 'ipv4' | 'ipv6';
export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

export interface PortRange {
  first: number;
  last: number;
}

/** What the chain always allows besides established traffic: the control plane and, if needed, DNS. */
export interface BaseRules {
  /** The control plane endpoint(s): resolved addresses of the control URL's host, and its port. */
  control: readonly { address: string; port: number }[];
  /** Resolvers the relay may query (udp and tcp 53); empty when the control URL is an address. */
  dns: readonly string[];
}

/** One ACCEPT for one resolved target address of an egress lease. */
export interface LeaseRule {
  address: string;
  port: number;
  /** When set, only connections from these local ports match (the lease's source-port block). */
  sourcePorts?: PortRange;
}

export interface LeaseRules {
  leaseId: string;
  rules: readonly LeaseRule[];
  expiresAt: Date;
}

export class RuleError extends Error {
  override readonly name = 'RuleError';
  readonly code = 'EGRESS_RULE_INVALID';
}

const LEASE_ID_RE = /^[A-Za-z0-9_.:-]{1,100}$/;

/** The family of an IP literal; throws RuleError for anything else (names never reach iptables). */
export function familyOf(address: string): Family {
  const v = isIP(address);
  if (v === 4) return 'ipv4';
  if (v === 6) return 'ipv6';
  throw new RuleError(`not an IP address: ${JSON.stringify(address)}`);
}

/** `-d` operand as iptables-save prints it: `a.b.c.d/32` or the compressed IPv6 form `/128`. */
export function hostCidr(address: string): string {
  if (familyOf(address) === 'ipv4') return `${address}/32`;
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  return `${canonical}/128`;
}

export function leaseComment(leaseId: string): string {
  if (!LEASE_ID_RE.test(leaseId)) throw new RuleError(`lease id not usable in a rule comment: ${JSON.stringify(leaseId)}`);
  return `${LEASE_COMMENT_PREFIX}${leaseId}`;
}

/** xt_time `--datestop` (UTC), rounded up to the next whole second. */
export function datestop(at: Date): string {
  const ms = at.getTime();
  if (!Number.isFinite(ms)) throw new RuleError('lease expiry is not a valid date');
  return new Date(Math.ceil(ms / 1000) * 1000).toISOString().slice(0, 19);
}

function port(p: number): string {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RuleError(`invalid port ${p}`);
  return String(p);
}

function portRange(r: PortRange): string {
  if (r.first > r.last) throw new RuleError(`invalid port range ${r.first}-${r.last}`);
  return `${port(r.first)}:${port(r.last)}`;
}

/** A comment operand quoted as iptables-save quotes it (only when it holds more than [A-Za-z0-9_.-]). */
function commentArg(text: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(text) ? text : `"${text}"`;
}

const rejectWith = (family: Family) => (family === 'ipv4' ? 'icmp-port-unreachable' : 'icmp6-port-unreachable');

/** The chain's rules for one family, as `-A TUNNEL-EGRESS ...` lines. Leases are ordered by id. */
export function chainRules(family: Family, base: BaseRules, leases: readonly LeaseRules[]): string[] {
  const A = `-A ${EGRESS_CHAIN}`;
  const mine = (address: string) => familyOf(address) === family;
  const lines = [`${A} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`];
  for (const c of base.control.filter((c) => mine(c.address))) {
    lines.push(`${A} -d ${hostCidr(c.address)} -p tcp -m tcp --dport ${port(c.port)} -m comment --comment ${commentArg('tunnel-control')} -j ACCEPT`);
  }
  for (const r of base.dns.filter(mine)) {
    for (const proto of ['udp', 'tcp']) {
      lines.push(`${A} -d ${hostCidr(r)} -p ${proto} -m ${proto} --dport 53 -m comment --comment ${commentArg('tunnel-dns')} -j ACCEPT`);
    }
  }
  for (const lease of [...leases].sort((a, b) => (a.leaseId < b.leaseId ? -1 : a.leaseId > b.leaseId ? 1 : 0))) {
    const comment = leaseComment(lease.leaseId);
    const stop = datestop(lease.expiresAt);
    for (const r of lease.rules.filter((r) => mine(r.address))) {
      const sport = r.sourcePorts ? ` --sport ${portRange(r.sourcePorts)}` : '';
      lines.push(`${A} -d ${hostCidr(r.address)} -p tcp -m tcp${sport} --dport ${port(r.port)} -m time --datestop ${stop} -m comment --comment ${commentArg(comment)} -j ACCEPT`);
    }
  }
  lines.push(`${A} -j REJECT --reject-with ${rejectWith(family)}`);
  return lines;
}

/**
 * Input for `iptables-restore --noflush`: declaring the chain flushes only that chain, so the
 * whole body is replaced in one transaction and nothing else in the table is touched.
 */
export function restoreInput(family: Family, base: BaseRules, leases: readonly LeaseRules[]): string {
  return ['*filter', `:${EGRESS_CHAIN} - [0:0]`, ...chainRules(family, base, leases), 'COMMIT', ''].join('\n');
}

/** The OUTPUT hook's match: the relay's own traffic, by owner uid. */
export function hookSpec(uid: number): string[] {
  if (!Number.isInteger(uid) || uid < 0) throw new RuleError(`invalid uid ${uid}`);
  return ['-m', 'owner', '--uid-owner', String(uid), '-j', EGRESS_CHAIN];
}

/** `iptables` arguments: does the hook exist? (exit 0 yes, 1 no). */
export const hookCheckArgs = (uid: number): string[] => ['-w', '-C', 'OUTPUT', ...hookSpec(uid)];
/** `iptables` arguments: insert the hook first in OUTPUT. */
export const hookInsertArgs = (uid: number): string[] => ['-w', '-I', 'OUTPUT', '1', ...hookSpec(uid)];
/** `iptables` arguments: list OUTPUT (to find hooks for another uid left by an earlier run). */
export const listOutputArgs = (): string[] => ['-w', '-S', 'OUTPUT'];
/** `iptables-restore` arguments. */
export const restoreArgs = (): string[] => ['-w', '--noflush'];

/**
 * From `iptables -S OUTPUT` output, the `-D` argument lists that remove every jump to the
 * chain other than the wanted hook (a hook for a uid configured earlier would otherwise keep
 * sending that uid's traffic into the chain).
 */
export function staleHookDeletes(listing: string, uid: number): string[][] {
  const wanted = ['-A', 'OUTPUT', ...hookSpec(uid)].join(' ');
  return listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('-A OUTPUT ') && l.endsWith(`-j ${EGRESS_CHAIN}`) && l !== wanted)
    .map((l) => ['-w', '-D', ...l.split(/\s+/).slice(1)]);
}

/** Extracts the chain's lines from `iptables-save` output (for read-back and tests). */
export function chainFromSave(save: string): string[] {
  return save.split('\n').filter((l) => l.startsWith(`-A ${EGRESS_CHAIN} `));
}
