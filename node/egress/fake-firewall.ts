import type { Firewall } from './firewall.js';
import { FirewallError } from './firewall.js';
import { chainRules, type BaseRules, type Family, type LeaseRule, type LeaseRules } from './rules.js';

/**
 * In-memory Firewall for component tests: keeps the same state the iptables driver writes and
 * renders it with the same builders, so tests read back the chain as the kernel would hold it.
 * `failNext()` makes the next change throw, as a vanished privilege would.
 */
export class FakeFirewall implements Firewall {
  readonly driver = 'iptables' as const;
  #base: BaseRules | undefined;
  #leases = new Map<string, LeaseRules>();
  #fail: string | undefined;
  /** Number of whole-chain writes, as the driver would do them. */
  applies = 0;
  /** True once close() ran. */
  closed = false;

  async init(base: BaseRules): Promise<void> {
    this.#check();
    chainRules('ipv4', base, []); // validates like the driver would
    this.#base = base;
    this.#leases.clear();
    this.closed = false;
    this.applies++;
  }

  async setLease(leaseId: string, rules: readonly LeaseRule[], expiresAt: Date): Promise<void> {
    this.#check();
    const next = new Map(this.#leases).set(leaseId, { leaseId, rules: [...rules], expiresAt });
    chainRules('ipv4', this.#requireBase(), [...next.values()]);
    chainRules('ipv6', this.#requireBase(), [...next.values()]);
    this.#leases = next;
    this.applies++;
  }

  async removeLease(leaseId: string): Promise<void> {
    this.#check();
    if (!this.#leases.delete(leaseId)) return;
    this.applies++;
  }

  async reconcile(active: readonly LeaseRules[]): Promise<void> {
    this.#check();
    this.#leases = new Map(active.map((l) => [l.leaseId, l]));
    this.applies++;
  }

  async close(): Promise<void> {
    this.#check();
    this.#leases.clear();
    this.closed = true;
    this.applies++;
  }

  leases(): string[] {
    return [...this.#leases.keys()].sort();
  }

  /** The chain as `-A TUNNEL-EGRESS ...` lines (what iptables-save would show). */
  rules(family: Family = 'ipv4'): string[] {
    return this.#base ? chainRules(family, this.#base, [...this.#leases.values()]) : [];
  }

  failNext(message = 'iptables-restore: Permission denied (you must be root)'): void {
    this.#fail = message;
  }

  #check(): void {
    const f = this.#fail;
    this.#fail = undefined;
    if (f) throw new FirewallError(f);
  }

  #requireBase(): BaseRules {
    if (!this.#base) throw new FirewallError('firewall not initialised');
    return this.#base;
  }
}
