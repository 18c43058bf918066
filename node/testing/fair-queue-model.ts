/**
 * The reference for FairQueue (node/events/fair-queue.ts) in tests: an array in queue order, and
 * when each member's count last changed. The largest member is found by a scan: the highest count,
 * and of those the one that reached it (up or down) first.
 */
export class FairQueueModel<T> {
  readonly items: { member: string; item: T }[] = [];
  readonly #changedAt = new Map<string, number>();
  #clock = 0;

  push(member: string, item: T): void {
    this.items.push({ member, item });
    this.#changedAt.set(member, this.#clock++);
  }

  shift(): T | undefined {
    const gone = this.items.shift();
    if (gone) this.#changedAt.set(gone.member, this.#clock++);
    return gone?.item;
  }

  largest(): { member: string; oldest: T; held: number } | undefined {
    const counts = new Map<string, number>();
    for (const q of this.items) counts.set(q.member, (counts.get(q.member) ?? 0) + 1);
    let best: { member: string; held: number } | undefined;
    for (const [member, held] of counts) {
      if (!best || held > best.held || (held === best.held && this.#changedAt.get(member)! < this.#changedAt.get(best.member)!)) best = { member, held };
    }
    if (!best) return undefined;
    return { ...best, oldest: this.items.find((q) => q.member === best.member)!.item };
  }

  dropFromLargest(): { member: string; item: T; held: number } | undefined {
    const largest = this.largest();
    if (!largest) return undefined;
    this.items.splice(
      this.items.findIndex((q) => q.item === largest.oldest),
      1,
    );
    this.#changedAt.set(largest.member, this.#clock++);
    return { member: largest.member, item: largest.oldest, held: largest.held };
  }
}

/** A seeded PRNG (mulberry32): `rand(n)` is an integer in [0, n), the same sequence on every run. */
export function seededRandom(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
  };
}
