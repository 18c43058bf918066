/**
 * Each member's share of a FIFO queue (EventReporter's): its items in queue order, and which
 * member holds the most, found in constant time. Counts change one at a time, so members are kept
 * in buckets by count with the highest count known: picking the member that holds the most was a
 * scan of every member (and then of the queue for its oldest item) on each push to a full queue,
 * up to 10,000 of each per event while the control plane was away.
 */
export class MemberShares<T> {
  /** Each member's items, oldest first; no entry for a member with none. */
  readonly #items = new Map<string, T[]>();
  /** Members by how many items they hold (insertion order: the first to reach that count first). */
  readonly #byCount = new Map<number, Set<string>>();
  #most = 0;

  /** `item` of `member` joined the back of the queue. */
  add(member: string, item: T): void {
    let items = this.#items.get(member);
    if (!items) this.#items.set(member, (items = []));
    items.push(item);
    this.#move(member, items.length - 1, items.length);
  }

  /**
   * `item` of `member` left the queue: its member's oldest (the queue is FIFO per member, and only
   * its front or a member's oldest leave it), so this takes constant time; any other is looked for.
   */
  removeOldest(member: string, item: T): void {
    const items = this.#items.get(member);
    const at = items ? (items[0] === item ? 0 : items.indexOf(item)) : -1;
    if (!items || at === -1) return;
    if (at === 0) items.shift();
    else items.splice(at, 1);
    if (items.length === 0) this.#items.delete(member);
    this.#move(member, items.length + 1, items.length);
  }

  /** The member holding the most items (the first to reach that many), its oldest item and its count; undefined when empty. */
  largest(): { member: string; oldest: T; held: number } | undefined {
    const members = this.#byCount.get(this.#most);
    if (!members) return undefined;
    const member = members.values().next().value as string;
    return { member, oldest: this.#items.get(member)![0]!, held: this.#most };
  }

  #move(member: string, from: number, to: number): void {
    if (from > 0) {
      const set = this.#byCount.get(from)!;
      set.delete(member);
      if (set.size === 0) {
        this.#byCount.delete(from);
        if (this.#most === from) this.#most = to; // only ever one step: to is from - 1 here
      }
    }
    if (to > 0) {
      let set = this.#byCount.get(to);
      if (!set) this.#byCount.set(to, (set = new Set()));
      set.add(member);
      if (to > this.#most) this.#most = to;
    }
  }
}
