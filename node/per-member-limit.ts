/**
 * What each member (a lease's subject) holds of one thing across all its connections, against a
 * limit: its channels (--max-channels-per-member; Y's channels, open or being opened) and its
 * connections (--max-connections-per-member). A member may have as many leases as it asks the
 * control plane for, so the per-lease and per-connection limits alone bound nothing per member.
 * Every bridged channel may hold up to the SSH window the relay granted its peer (2 MiB) while
 * the other side is slow: with its own exposure that accepts channels and never reads, 128
 * channels over two connections held 128 MiB of relay memory. Every authenticated connection
 * holds a socket and about 30 KB.
 */
export class PerMemberLimit {
  readonly #limit: number;
  readonly #held = new Map<string, number>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Takes one for `member`; its release (idempotent), or undefined when it holds its limit. */
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
}
