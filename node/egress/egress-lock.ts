import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { LeaseTarget } from '../../protocol/lease-claims.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import { systemLookup, type Lookup } from './base-rules.js';
import { dialTcp, type Dialer } from './dial.js';
import type { Firewall } from './firewall.js';
import { PortBlocks } from './port-blocks.js';
import type { BaseRules, LeaseRule, PortRange } from './rules.js';

export type EgressRefusal =
  | 'egress_lease_revoked'
  | 'egress_lease_expired'
  | 'egress_lease_inactive'
  | 'egress_no_port_block'
  | 'egress_resolve_failed'
  | 'egress_firewall_failed'
  | 'egress_connect_failed'
  | 'egress_connect_timeout';

export class EgressError extends Error {
  override readonly name = 'EgressError';
  readonly code = 'EGRESS_REFUSED';
  constructor(
    readonly reason: EgressRefusal,
    message: string,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/** What the lock needs of a verified egress lease. */
export interface EgressLease {
  leaseId: string;
  targets: readonly LeaseTarget[];
  expiresAt: Date;
}

export interface EgressLockOptions {
  firewall: Firewall;
  clock: Clock;
  logger: Logger;
  connectTimeoutMs: number;
  isRevoked(leaseId: string): boolean;
  /** Per-lease source-port blocks (`--egress-source-ports`); off when undefined. */
  sourcePorts?: { range: PortRange; perLease: number };
  lookup?: Lookup;
  /** Testing only: dials in place of dialTcp (a test holds a dial's answer back). */
  dial?: Dialer;
  /**
   * Dead man's switch: lease rules carry a kernel deadline (`--datestop`) at most this far ahead,
   * and the live relay keeps pushing it forward (every third of it). A relay that dies stops
   * pushing, so within this time the kernel honours none of its lease rules and the chain is
   * down to its REJECT. Default 30 s.
   */
  holdMs?: number;
}

interface Active {
  leaseId: string;
  expiresAt: Date;
  sessions: Set<string>;
  /** Each lease target with the addresses its rules allow (a name is resolved once, here). */
  targets: { host: string; port: number; addresses: string[] }[];
  block: PortRange | undefined;
  nextPort: number;
  /** The rules as installed (for the periodic push of their kernel deadline). */
  rules: LeaseRule[];
  ready: Promise<void>;
  removed: boolean;
  blockFreed: boolean;
}

/**
 * The egress lock: which egress leases are active on this relay, their rules in the firewall,
 * and the only way the relay dials a target. A lease becomes active when a connection holding
 * it authenticates; its rules go when its last connection ends, when it expires (timer) or when
 * it is revoked, whichever comes first.
 */
export class EgressLock {
  #o: EgressLockOptions;
  #active = new Map<string, Active>();
  #blocks: PortBlocks | undefined;
  #timer: NodeJS.Timeout | undefined;
  #holdTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #lastError: string | null = null;
  readonly counters = { activated: 0, removed: 0, failures: 0 };

  constructor(o: EgressLockOptions) {
    this.#o = o;
    this.#blocks = o.sourcePorts ? new PortBlocks(o.sourcePorts.range, o.sourcePorts.perLease) : undefined;
  }

  get driver(): Firewall['driver'] {
    return this.#o.firewall.driver;
  }

  /** Rebuilds the chain with the base rules only. Throws FirewallError (the relay must not start). */
  async start(base: BaseRules): Promise<void> {
    await this.#o.firewall.init(base);
  }

  /** Marks `lease` active for `sessionId`; resolves once its rules are in the firewall. */
  activate(lease: EgressLease, sessionId: string): Promise<void> {
    const now = this.#o.clock.now().getTime();
    if (this.#stopped) return Promise.reject(new EgressError('egress_lease_inactive', 'relay is stopping'));
    if (this.#o.isRevoked(lease.leaseId)) return Promise.reject(new EgressError('egress_lease_revoked', 'lease revoked'));
    if (lease.expiresAt.getTime() <= now) return Promise.reject(new EgressError('egress_lease_expired', 'lease expired'));
    const existing = this.#active.get(lease.leaseId);
    if (existing) {
      existing.sessions.add(sessionId);
      return existing.ready;
    }
    let block: PortRange | undefined;
    if (this.#blocks) {
      block = this.#blocks.take();
      if (!block) return Promise.reject(new EgressError('egress_no_port_block', 'every source-port block is in use'));
    }
    const a: Active = {
      leaseId: lease.leaseId,
      expiresAt: lease.expiresAt,
      sessions: new Set([sessionId]),
      targets: [],
      block,
      nextPort: block?.first ?? 0,
      rules: [],
      ready: Promise.resolve(),
      removed: false,
      blockFreed: false,
    };
    this.#active.set(lease.leaseId, a);
    a.ready = this.#install(a, lease.targets).catch((err: unknown) => {
      this.counters.failures++;
      this.#lastError = err instanceof Error ? err.message : String(err);
      if (this.#active.get(a.leaseId) === a) this.#active.delete(a.leaseId);
      a.removed = true;
      this.#freeBlock(a);
      throw err instanceof EgressError ? err : new EgressError('egress_firewall_failed', this.#lastError, { cause: err });
    });
    this.#schedule();
    return a.ready;
  }

  /** The connection `sessionId` ended: leases it was the last holder of lose their rules. */
  release(sessionId: string): void {
    for (const a of [...this.#active.values()]) {
      if (a.sessions.delete(sessionId) && a.sessions.size === 0) this.#remove(a, 'last_connection_closed');
    }
  }

  revoke(leaseId: string): void {
    const a = this.#active.get(leaseId);
    if (a) this.#remove(a, 'revoked');
  }

  /** Removes the rules of leases whose expiry has passed. */
  sweep(): void {
    const now = this.#o.clock.now().getTime();
    for (const a of [...this.#active.values()]) if (a.expiresAt.getTime() <= now) this.#remove(a, 'expired');
    this.#schedule();
  }

  /**
   * Connects to one of the lease's targets (the caller has checked it is in the lease) at the
   * addresses its rules allow, from the lease's source-port block when blocks are on.
   */
  async dial(leaseId: string, target: { host: string; port: number }): Promise<Socket> {
    const a = this.#active.get(leaseId);
    if (!a || a.removed) throw new EgressError('egress_lease_inactive', 'lease has no egress rules');
    await a.ready;
    const t = a.targets.find((x) => x.host === target.host && x.port === target.port);
    if (!t || a.removed) throw new EgressError('egress_lease_inactive', 'target not active for this lease');
    let last: unknown;
    for (const address of t.addresses) {
      const ports = a.block ? this.#portsFrom(a) : [undefined];
      for (const localPort of ports) {
        try {
          return await (this.#o.dial ?? dialTcp)({ host: address, port: t.port, localPort, timeoutMs: this.#o.connectTimeoutMs });
        } catch (err) {
          last = err;
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
        }
      }
    }
    const timeout = (last as { code?: string } | undefined)?.code === 'ETIMEDOUT';
    throw new EgressError(timeout ? 'egress_connect_timeout' : 'egress_connect_failed', last instanceof Error ? last.message : 'connect failed', { cause: last });
  }

  status() {
    return {
      driver: this.driver,
      active_leases: this.#active.size,
      lease_ids: [...this.#active.keys()].sort(),
      source_port_blocks_free: this.#blocks?.available ?? null,
      failures: this.counters.failures,
      last_error: this.#lastError,
    };
  }

  /** Graceful stop: every lease rule goes; the chain and its REJECT stay. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#holdTimer) clearInterval(this.#holdTimer);
    for (const a of this.#active.values()) a.removed = true;
    this.#active.clear();
    await this.#o.firewall.close();
  }

  async #install(a: Active, targets: readonly LeaseTarget[]): Promise<void> {
    const lookup = this.#o.lookup ?? systemLookup;
    for (const t of targets) {
      let addresses: string[];
      try {
        addresses = isIP(t.host) ? [t.host] : [...new Set(await lookup(t.host))];
      } catch (err) {
        throw new EgressError('egress_resolve_failed', `cannot resolve egress target ${t.host}`, { cause: err });
      }
      if (addresses.length === 0) throw new EgressError('egress_resolve_failed', `egress target ${t.host} has no address`);
      a.targets.push({ host: t.host, port: t.port, addresses });
    }
    const rules: LeaseRule[] = a.targets.flatMap((t) => t.addresses.map((address) => ({ address, port: t.port, ...(a.block ? { sourcePorts: a.block } : {}) })));
    a.rules = rules;
    await this.#o.firewall.setLease(a.leaseId, rules, this.#kernelDeadline(a));
    this.#startHold();
    if (a.removed) {
      // Released, revoked or expired while the rules were being written: take them out again.
      await this.#o.firewall.removeLease(a.leaseId);
      throw new EgressError('egress_lease_inactive', 'lease ended while activating');
    }
    this.counters.activated++;
    this.#o.logger.info('egress rules added', { leaseId: a.leaseId, rules: rules.length, expiresAt: a.expiresAt.toISOString(), sourcePorts: a.block ? `${a.block.first}-${a.block.last}` : undefined });
  }

  #remove(a: Active, reason: 'expired' | 'revoked' | 'last_connection_closed'): void {
    if (a.removed) return;
    a.removed = true;
    this.#active.delete(a.leaseId);
    this.#schedule();
    void a.ready
      .then(
        () => this.#o.firewall.removeLease(a.leaseId),
        () => undefined, // never installed
      )
      .then(
        () => {
          this.counters.removed++;
          this.#o.logger.info('egress rules removed', { leaseId: a.leaseId, reason });
        },
        (err: unknown) => {
          this.counters.failures++;
          this.#lastError = err instanceof Error ? err.message : String(err);
          // The rules stay until the kernel's own --datestop or the next start; say so.
          this.#o.logger.error('egress rules not removed', { leaseId: a.leaseId, reason, err });
        },
      )
      .finally(() => {
        // The block is reused only once the old rules are gone.
        this.#freeBlock(a);
      });
  }

  get #holdMs(): number {
    return this.#o.holdMs ?? 30_000;
  }

  /** The lease's deadline as the kernel sees it: its expiry, or sooner while the relay lives. */
  #kernelDeadline(a: Active): Date {
    return new Date(Math.min(a.expiresAt.getTime(), this.#o.clock.now().getTime() + this.#holdMs));
  }

  #startHold(): void {
    if (this.#holdTimer || this.#stopped) return;
    this.#holdTimer = setInterval(() => void this.pushDeadlines(), Math.max(1_000, Math.floor(this.#holdMs / 3)));
    this.#holdTimer.unref();
  }

  /** Pushes every active lease's kernel deadline forward (one atomic rewrite of the chain). */
  async pushDeadlines(): Promise<void> {
    const live = [...this.#active.values()].filter((a) => !a.removed && a.rules.length > 0);
    if (live.length === 0) {
      if (this.#holdTimer && this.#active.size === 0) {
        clearInterval(this.#holdTimer);
        this.#holdTimer = undefined;
      }
      return;
    }
    try {
      await this.#o.firewall.reconcile(live.map((a) => ({ leaseId: a.leaseId, rules: a.rules, expiresAt: this.#kernelDeadline(a) })));
    } catch (err) {
      this.counters.failures++;
      this.#lastError = err instanceof Error ? err.message : String(err);
      this.#o.logger.error('egress deadlines not pushed; lease rules lapse at their kernel deadline', { err });
    }
  }

  #freeBlock(a: Active): void {
    if (!a.block || a.blockFreed) return;
    a.blockFreed = true;
    this.#blocks?.give(a.block);
  }

  #portsFrom(a: Active): number[] {
    const b = a.block!;
    const size = b.last - b.first + 1;
    const start = a.nextPort;
    a.nextPort = a.nextPort >= b.last ? b.first : a.nextPort + 1;
    return Array.from({ length: size }, (_, i) => b.first + ((start - b.first + i) % size));
  }

  /** One timer for the nearest expiry, capped so a wall-clock jump is noticed within a minute. */
  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#stopped || this.#active.size === 0) return;
    let next = Infinity;
    for (const a of this.#active.values()) next = Math.min(next, a.expiresAt.getTime());
    const delay = Math.min(Math.max(0, next - this.#o.clock.now().getTime()), 60_000);
    this.#timer = setTimeout(() => this.sweep(), delay + 5);
    this.#timer.unref();
  }
}
