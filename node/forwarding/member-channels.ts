/**
 * Y's channels of each member (a lease's subject) across all its connections, open or being
 * opened, against --max-channels-per-member. Every bridged channel may hold up to the SSH window
 * the relay granted its peer (2 MiB) while the other side is slow, and the per-connection limit
 * alone let one member multiply that by as many connections as it had leases: with its own
 * exposure that accepts channels and never reads, 128 channels over two connections held 128 MiB
 * of relay memory, and nothing stopped it at 2,000.
 */
export class MemberChannels {
  readonly #limit: number;
  readonly #held = new Map<string, number>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Takes one of `member`'s channels; its release (idempotent), or undefined when it holds its limit. */
  take(member: string): (() => void) | undefined {
    const held = this.#held.get(member) ?? 0;
    if (held >= this.#limit) return undefined;
    this.#held.set(member, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#held.get(member) ?? 1) - 1;
      if (n > 0) this.#held.set(member, n);
      else this.#held.delete(member);
    };
  }

  /** Channels `member` holds now. */
  heldBy(member: string): number {
    return this.#held.get(member) ?? 0;
  }
}
