/**
 * The channel data the relay holds now, for the gc pacer's full collections (node/gc-pacer.ts:
 * Buffers that are live, not garbage). Only open bridges hold channel data: what is inside their
 * streams (read from one side, not yet taken by the other) and what their ends' send queues hold
 * for the two SSH peers (socket write queue, ssh2's key exchange queue). Bridges register here
 * when they open and leave when they close, so a paced check costs in proportion to the open
 * bridges, not to every connection the relay holds (10,000 idle exposures cost nothing here).
 */

/** Something holding bytes now (a bridge's streams). */
export interface Holding {
  buffered(): number;
}

/** A peer's send queue (node/send-budget.ts); several bridges may share one (X's connection). */
export interface Queue {
  readonly buffered: number;
}

export class LiveBytes {
  #bridges = new Set<Holding>();
  /** Each queue once, with how many open bridges use it. */
  #queues = new Map<Queue, number>();

  /** Counts `bridge` and its ends' queues until the returned function is called (idempotent). */
  add(bridge: Holding, queues: readonly (Queue | undefined)[]): () => void {
    this.#bridges.add(bridge);
    const mine = queues.filter((q): q is Queue => q !== undefined);
    for (const q of mine) this.#queues.set(q, (this.#queues.get(q) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#bridges.delete(bridge);
      for (const q of mine) {
        const n = (this.#queues.get(q) ?? 1) - 1;
        if (n > 0) this.#queues.set(q, n);
        else this.#queues.delete(q);
      }
    };
  }

  /** Bytes held now: the open bridges' streams plus their queues, each queue once. */
  total(): number {
    let n = 0;
    for (const b of this.#bridges) n += b.buffered();
    for (const q of this.#queues.keys()) n += q.buffered;
    return n;
  }

  /** Open bridges counted now. */
  get bridges(): number {
    return this.#bridges.size;
  }
}
