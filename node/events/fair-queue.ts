/** One item in the queue: linked in queue order, and to the next item of its member. */
interface Entry<T> {
  readonly item: T;
  readonly member: string;
  prev: Entry<T> | undefined;
  next: Entry<T> | undefined;
  nextOfMember: Entry<T> | undefined;
}

/** A member's items in the queue: the oldest and newest of its chain, and how many. */
interface Share<T> {
  readonly member: string;
  oldest: Entry<T>;
  newest: Entry<T>;
  held: number;
}

/**
 * A FIFO queue of items, each of a member (EventReporter's), that can also give up the oldest item
 * of the member holding the most. Every operation takes constant time: items are linked in queue
 * order (so one leaves from the middle without moving the others) and, per member, to the next of
 * the same member; members are kept in buckets by how many they hold, with the highest count known.
 * It was an array spliced at the dropped event, and an array per member shifted, on each push to a
 * full queue: up to 10,000 events moved per event while the control plane was away, and a member
 * reconnecting in a loop makes those events.
 *
 * Items leave only from the front (`shift`) or as the oldest of the largest member (`dropFromLargest`):
 * either is its member's oldest, as each member's items are in queue order.
 */
export class FairQueue<T> {
  #head: Entry<T> | undefined;
  #tail: Entry<T> | undefined;
  #size = 0;
  /** Each member's share; no entry for a member holding none. */
  readonly #shares = new Map<string, Share<T>>();
  /** Members by how many items they hold (insertion order: the first to reach that count, up or down, first). */
  readonly #byCount = new Map<number, Set<Share<T>>>();
  #most = 0;

  get size(): number {
    return this.#size;
  }

  /** `item` of `member` joins the back of the queue. */
  push(member: string, item: T): void {
    const entry: Entry<T> = { item, member, prev: this.#tail, next: undefined, nextOfMember: undefined };
    let share = this.#shares.get(member);
    if (share) {
      share.newest.nextOfMember = entry;
      share.newest = entry;
    } else {
      share = { member, oldest: entry, newest: entry, held: 0 };
      this.#shares.set(member, share);
    }
    if (this.#tail) this.#tail.next = entry;
    else this.#head = entry;
    this.#tail = entry;
    this.#size++;
    this.#move(share, share.held, share.held + 1);
  }

  /** The item at the front (the oldest), if any. */
  peek(): T | undefined {
    return this.#head?.item;
  }

  /** Takes the item at the front (the oldest) out of the queue. */
  shift(): T | undefined {
    const entry = this.#head;
    if (!entry) return undefined;
    this.#remove(entry);
    return entry.item;
  }

  /** The member holding the most items (the first to reach that many), its oldest item and its count; undefined when empty. */
  largest(): { member: string; oldest: T; held: number } | undefined {
    const share = this.#largestShare();
    return share && { member: share.member, oldest: share.oldest.item, held: share.held };
  }

  /** Takes the oldest item of the member holding the most (largest()) out of the queue; `held` is its count before. */
  dropFromLargest(): { member: string; item: T; held: number } | undefined {
    const share = this.#largestShare();
    if (!share) return undefined;
    const { member, held, oldest } = share;
    this.#remove(oldest);
    return { member, item: oldest.item, held };
  }

  /** The items from the front, oldest first (stop early to read only the front). */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let e = this.#head; e; e = e.next) yield e.item;
  }

  #largestShare(): Share<T> | undefined {
    const shares = this.#byCount.get(this.#most);
    return shares?.values().next().value;
  }

  /** Unlinks `entry`, its member's oldest (the front, or the largest member's oldest). */
  #remove(entry: Entry<T>): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.#size--;
    const share = this.#shares.get(entry.member)!;
    if (entry.nextOfMember) share.oldest = entry.nextOfMember;
    else this.#shares.delete(share.member);
    entry.nextOfMember = undefined;
    this.#move(share, share.held, share.held - 1);
  }

  #move(share: Share<T>, from: number, to: number): void {
    share.held = to;
    if (from > 0) {
      const set = this.#byCount.get(from)!;
      set.delete(share);
      if (set.size === 0) {
        this.#byCount.delete(from);
        if (this.#most === from) this.#most = to; // only ever one step: to is from - 1 here
      }
    }
    if (to > 0) {
      let set = this.#byCount.get(to);
      if (!set) this.#byCount.set(to, (set = new Set()));
      set.add(share);
      if (to > this.#most) this.#most = to;
    }
  }
}
