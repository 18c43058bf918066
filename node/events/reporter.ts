import type { ConnectionEvent } from '../../protocol/api-types.js';
import type { ControlClient } from '../control-client.js';
import type { Logger } from '../logger.js';

export const MAX_BATCH = 1000;

/**
 * Sends connection and exposure events to the control plane in batches. Data paths only ever
 * call `push`, which never waits: the queue is bounded and drops its oldest event when full
 * (counted in `dropped`). A failed batch is put back and retried on the next flush.
 */
export class EventReporter {
  #queue: ConnectionEvent[] = [];
  #max: number;
  #client: Pick<ControlClient, 'sendEvents'>;
  #logger: Logger;
  #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failing = false;
  dropped = 0;
  sent = 0;

  constructor(opts: { client: Pick<ControlClient, 'sendEvents'>; logger: Logger; maxQueue: number; intervalMs: number }) {
    this.#client = opts.client;
    this.#logger = opts.logger;
    this.#max = opts.maxQueue;
    this.#intervalMs = opts.intervalMs;
  }

  get queued(): number {
    return this.#queue.length;
  }

  push(event: ConnectionEvent): void {
    this.#queue.push(event);
    if (this.#queue.length > this.#max) {
      this.#queue.splice(0, this.#queue.length - this.#max);
      this.dropped++;
    }
  }

  start(): void {
    this.#timer = setInterval(() => void this.flush(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops the schedule and makes one last attempt to deliver what is queued. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
  }

  /** Sends everything queued, one batch at a time; stops at the first failure. */
  flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      try {
        await this.#client.sendEvents(batch);
        this.sent += batch.length;
        if (this.#failing) this.#logger.info('event reporting recovered');
        this.#failing = false;
      } catch (err) {
        // Put the batch back in front, keeping the newest events when that overflows.
        this.#queue.unshift(...batch);
        if (this.#queue.length > this.#max) {
          const over = this.#queue.length - this.#max;
          this.#queue.splice(0, over);
          this.dropped += over;
        }
        if (!this.#failing) this.#logger.warn('event reporting failed; will retry', { err, queued: this.#queue.length });
        this.#failing = true;
        return;
      }
    }
  }
}
