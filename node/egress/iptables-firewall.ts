import { FirewallError, type Firewall } from './firewall.js';
import { RunnerError, type CommandRunner } from './iptables-runner.js';
import {
  FAMILIES,
  hookCheckArgs,
  hookInsertArgs,
  listOutputArgs,
  restoreArgs,
  restoreInput,
  staleHookDeletes,
  type BaseRules,
  type Family,
  type LeaseRule,
  type LeaseRules,
} from './rules.js';

const BINARIES: Record<Family, { iptables: string; restore: string }> = {
  ipv4: { iptables: 'iptables', restore: 'iptables-restore' },
  ipv6: { iptables: 'ip6tables', restore: 'ip6tables-restore' },
};

export interface IptablesFirewallOptions {
  runner: CommandRunner;
  /** Whose outbound traffic the OUTPUT hook sends into the chain. */
  uid: number;
  /** Default both: an IPv6 route would otherwise bypass an IPv4-only lock. */
  families?: readonly Family[];
}

/**
 * The iptables driver. Holds the desired state (base rules + lease rules) and writes the whole
 * chain body with `iptables-restore --noflush` on every change (atomic per family; changes
 * are serialised). The OUTPUT hook is inserted once, after checking it is not there.
 */
export class IptablesFirewall implements Firewall {
  readonly driver = 'iptables' as const;
  #opts: IptablesFirewallOptions;
  #families: readonly Family[];
  #base: BaseRules | undefined;
  #leases = new Map<string, LeaseRules>();
  #queue: Promise<void> = Promise.resolve();

  constructor(opts: IptablesFirewallOptions) {
    this.#opts = opts;
    this.#families = opts.families ?? FAMILIES;
  }

  init(base: BaseRules): Promise<void> {
    return this.#serial(async () => {
      const leases = this.#leases;
      this.#base = base;
      this.#leases = new Map();
      try {
        // Chain first (the hook needs it to exist), rebuilt with base rules only.
        await this.#write();
        for (const f of this.#families) await this.#ensureHook(f);
      } catch (err) {
        this.#leases = leases;
        throw err;
      }
    });
  }

  setLease(leaseId: string, rules: readonly LeaseRule[], expiresAt: Date): Promise<void> {
    return this.#change((m) => m.set(leaseId, { leaseId, rules: [...rules], expiresAt }));
  }

  removeLease(leaseId: string): Promise<void> {
    if (!this.#leases.has(leaseId)) return this.#queue;
    return this.#change((m) => m.delete(leaseId));
  }

  reconcile(active: readonly LeaseRules[]): Promise<void> {
    return this.#change((m) => {
      m.clear();
      for (const l of active) m.set(l.leaseId, l);
    });
  }

  close(): Promise<void> {
    return this.#change((m) => m.clear());
  }

  leases(): string[] {
    return [...this.#leases.keys()].sort();
  }

  /** Applies `edit` to a copy of the lease map; the copy becomes the state once written. */
  #change(edit: (m: Map<string, LeaseRules>) => void): Promise<void> {
    return this.#serial(async () => {
      if (!this.#base) throw new FirewallError('egress firewall used before init()');
      const before = this.#leases;
      const next = new Map(before);
      edit(next);
      this.#leases = next;
      try {
        await this.#write();
      } catch (err) {
        this.#leases = before;
        throw err;
      }
    });
  }

  #serial(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #write(): Promise<void> {
    const base = this.#base!;
    const leases = [...this.#leases.values()];
    for (const f of this.#families) {
      const input = restoreInput(f, base, leases);
      const r = await this.#exec(BINARIES[f].restore, restoreArgs(), input);
      if (r.code !== 0) throw new FirewallError(`${BINARIES[f].restore} failed (exit ${r.code}): ${oneLine(r.stderr)}`);
    }
  }

  async #ensureHook(f: Family): Promise<void> {
    const bin = BINARIES[f].iptables;
    const listing = await this.#exec(bin, listOutputArgs());
    if (listing.code !== 0) throw new FirewallError(`${bin} -S OUTPUT failed (exit ${listing.code}): ${oneLine(listing.stderr)}`);
    for (const args of staleHookDeletes(listing.stdout, this.#opts.uid)) {
      const d = await this.#exec(bin, args);
      if (d.code !== 0) throw new FirewallError(`${bin} could not remove a stale hook (exit ${d.code}): ${oneLine(d.stderr)}`);
    }
    const check = await this.#exec(bin, hookCheckArgs(this.#opts.uid));
    if (check.code === 0) return;
    if (check.code !== 1) throw new FirewallError(`${bin} -C OUTPUT failed (exit ${check.code}): ${oneLine(check.stderr)}`);
    const ins = await this.#exec(bin, hookInsertArgs(this.#opts.uid));
    if (ins.code !== 0) throw new FirewallError(`${bin} -I OUTPUT failed (exit ${ins.code}): ${oneLine(ins.stderr)}`);
  }

  async #exec(cmd: string, args: readonly string[], input?: string) {
    try {
      return await this.#opts.runner.run(cmd, args, input);
    } catch (err) {
      throw new FirewallError(err instanceof RunnerError ? err.message : `${cmd}: ${String(err)}`, { cause: err });
    }
  }
}

const oneLine = (s: string) => s.trim().split('\n').filter(Boolean).slice(-1)[0] ?? 'no output';
