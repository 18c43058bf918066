import type { BaseRules, LeaseRule, LeaseRules } from './rules.js';

export type EgressDriver = 'iptables' | 'off';

/**
 * The egress lock's view of the kernel: one chain (`TUNNEL-EGRESS`) the relay's own outbound
 * traffic passes, holding base rules, one ACCEPT per active lease target, and a final REJECT.
 * A narrow interface with an in-memory fake, after tailscale `util/linuxfw`.
 *
 * Every method applies the whole chain at once, so the chain is never seen half-written.
 */
export interface Firewall {
  readonly driver: EgressDriver;
  /**
   * Rebuilds the chain from scratch with only the base rules (no lease is active before anyone
   * connected) and installs the OUTPUT hook if it is missing. Throws FirewallError when the
   * firewall cannot be managed (no privilege, no iptables).
   */
  init(base: BaseRules): Promise<void>;
  /** Adds or replaces the rules of one lease. */
  setLease(leaseId: string, rules: readonly LeaseRule[], expiresAt: Date): Promise<void>;
  /** Removes one lease's rules (no-op when it has none). */
  removeLease(leaseId: string): Promise<void>;
  /** Makes the lease rules exactly `active` (others are removed). */
  reconcile(active: readonly LeaseRules[]): Promise<void>;
  /** Graceful stop: removes every lease rule; the chain, the hook and the REJECT stay (fail closed). */
  close(): Promise<void>;
  /** The lease ids with rules now. */
  leases(): string[];
}

export class FirewallError extends Error {
  override readonly name = 'FirewallError';
  readonly code = 'EGRESS_FIREWALL_FAILED';
  /** What the operator should do, when it is not the default (privilege) advice. */
  readonly hint: string | undefined;
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, { cause: opts.cause });
    this.hint = opts.hint;
  }
}

/**
 * `--egress-driver off`: nothing in the kernel. The relay's own checks (exact lease targets)
 * still apply; only the kernel's second line of defence is missing, which is reported loudly.
 */
export class OffFirewall implements Firewall {
  readonly driver = 'off' as const;
  #leases = new Set<string>();
  async init(): Promise<void> {}
  async setLease(leaseId: string): Promise<void> {
    this.#leases.add(leaseId);
  }
  async removeLease(leaseId: string): Promise<void> {
    this.#leases.delete(leaseId);
  }
  async reconcile(active: readonly LeaseRules[]): Promise<void> {
    this.#leases = new Set(active.map((l) => l.leaseId));
  }
  async close(): Promise<void> {
    this.#leases.clear();
  }
  leases(): string[] {
    return [...this.#leases].sort();
  }
}
