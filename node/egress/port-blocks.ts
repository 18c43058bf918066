import type { PortRange } from './rules.js';

/**
 * Hands out fixed-size blocks of local ports from a range, one per active egress lease. The
 * lease's ACCEPT rules match `--sport` in its block, so the kernel keeps one lease's
 * connections (and every other process using ephemeral ports) away from another lease's
 * targets. Choose a range outside `net.ipv4.ip_local_port_range` (default 32768-60999).
 */
export class PortBlocks {
  readonly range: PortRange;
  readonly size: number;
  #free: number[];

  constructor(range: PortRange, size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('port block size must be a positive integer');
    const count = Math.floor((range.last - range.first + 1) / size);
    if (count < 1) throw new RangeError(`port range ${range.first}-${range.last} holds no block of ${size} ports`);
    this.range = range;
    this.size = size;
    this.#free = Array.from({ length: count }, (_, i) => i);
  }

  get available(): number {
    return this.#free.length;
  }

  /** A free block, or undefined when every block is in use. */
  take(): PortRange | undefined {
    const i = this.#free.shift();
    if (i === undefined) return undefined;
    const first = this.range.first + i * this.size;
    return { first, last: first + this.size - 1 };
  }

  give(block: PortRange): void {
    const i = (block.first - this.range.first) / this.size;
    if (Number.isInteger(i) && !this.#free.includes(i)) this.#free.push(i);
  }
}
