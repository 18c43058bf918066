/** How many recent ping round trips the path's round trip is the smallest of. */
const KEPT = 4;

/**
 * A connection's round trip measured by pings (node/ssh2-internals/ping-times.ts): the smallest
 * of the last few. The relay pings a CLI peer once when it is authenticated and ssh2's keepalive
 * pings it after every 5 s without a packet, so the pings go out while nothing of the peer's
 * data queues ahead of the reply: on loopback a fraction of a millisecond, on a long path the
 * path's round trip. Channel data cannot give that on a busy path (node/adaptive-window.ts:
 * there a sample also counts the time the sender took to send a window). The last few rather
 * than all: a path that became longer shows after a few idle keepalives.
 */
export class PathRtt {
  #samples: number[] = [];

  add(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.#samples.push(ms);
    if (this.#samples.length > KEPT) this.#samples.shift();
  }

  /** The path's round trip in ms; Infinity before the first reply. */
  get ms(): number {
    return this.#samples.length === 0 ? Infinity : Math.min(...this.#samples);
  }
}
