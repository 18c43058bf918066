import { EVENT_BATCH_MAX_BYTES, EVENT_BATCH_MAX_EVENTS } from '../../protocol/node-api-check.js';
import type { ConnectionEvent } from '../../protocol/node-api.js';
import { ControlError, type ControlClient } from '../control-client.js';
import type { Logger } from '../../shared/logger.js';

/** Why events were given up: the queue overflowed, or control refused them for good. */
export type EventDropReason = 'queue_full' | 'refused';

/** `{"events":[` + `]}`: the body around the events. */
const ENVELOPE_BYTES = 13;
/** Smallest batch budget after 413s: one event of the largest size the schema allows fits. */
const MIN_BATCH_BYTES = 2048;

/**
 * Sends connection and exposure events to the control plane in batches. Data paths only ever
 * call `push`, which never waits: the queue is bounded and drops its oldest event when full.
 *
 * A batch holds at most EVENT_BATCH_MAX_EVENTS events and EVENT_BATCH_MAX_BYTES of JSON, so it
 * fits the control plane's body limit. What happens to a batch control does not accept depends
 * on why: unreachable, 5xx, 408, 429, 401 and 403 (not the batch's fault; the node credential
 * or control itself) keep it at the front of the queue for the next flush; 413 halves the
 * batch size (a limit smaller than ours) and retries at once; a single event still too large,
 * and any other 4xx, is a permanent refusal: the batch is dropped and counted, so it can never
 * block the events behind it. Drops of either kind are logged once per reason (and status),
 * then only counted.
 */
export class EventReporter {
  #queue: { event: ConnectionEvent; bytes: number }[] = [];
  #max: number;
  #client: Pick<ControlClient, 'sendEvents'>;
  #logger: Logger;
  #intervalMs: number;
  #budget: number;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failing = false;
  #logged = new Set<string>();
  #dropped: Record<EventDropReason, number> = { queue_full: 0, refused: 0 };
  sent = 0;

  constructor(opts: { client: Pick<ControlClient, 'sendEvents'>; logger: Logger; maxQueue: number; intervalMs: number; maxBatchBytes?: number }) {
    this.#client = opts.client;
    this.#logger = opts.logger;
    this.#max = opts.maxQueue;
    this.#intervalMs = opts.intervalMs;
    this.#budget = Math.max(MIN_BATCH_BYTES, opts.maxBatchBytes ?? EVENT_BATCH_MAX_BYTES);
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Events given up, all reasons. */
  get dropped(): number {
    return this.#dropped.queue_full + this.#dropped.refused;
  }

  droppedBy(reason: EventDropReason): number {
    return this.#dropped[reason];
  }

  /** The byte budget of one batch now (lower than EVENT_BATCH_MAX_BYTES after a 413). */
  get batchBytes(): number {
    return this.#budget;
  }

  push(event: ConnectionEvent): void {
    this.#queue.push({ event, bytes: Buffer.byteLength(JSON.stringify(event)) });
    if (this.#queue.length > this.#max) this.#drop('queue_full', this.#queue.splice(0, this.#queue.length - this.#max).length);
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

  /** Sends everything queued, one batch at a time; stops at the first failure worth retrying. */
  flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /** How many events from the front make the next batch (at least one). */
  #batchLength(): number {
    let bytes = ENVELOPE_BYTES;
    let n = 0;
    for (const q of this.#queue) {
      if (n >= EVENT_BATCH_MAX_EVENTS) break;
      const next = bytes + q.bytes + (n > 0 ? 1 : 0);
      if (n > 0 && next > this.#budget) break;
      bytes = next;
      n++;
    }
    return n;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const n = this.#batchLength();
      const batch = this.#queue.slice(0, n);
      try {
        await this.#client.sendEvents(batch.map((q) => q.event));
      } catch (err) {
        const status = err instanceof ControlError ? err.opts.status : undefined;
        const permanent = status !== undefined && status >= 400 && status < 500 && ![401, 403, 408, 429].includes(status);
        if (!permanent) {
          if (!this.#failing) this.#logger.warn('event reporting failed; will retry', { err, status, queued: this.#queue.length });
          this.#failing = true;
          return;
        }
        if (status === 413 && n > 1) {
          // Control's body limit is below ours: halve the batches (for good) and go on at once.
          const bytes = batch.reduce((sum, q) => sum + q.bytes + 1, ENVELOPE_BYTES);
          this.#budget = Math.max(MIN_BATCH_BYTES, Math.min(this.#budget, Math.floor(bytes / 2)));
          if (this.#batchLength() < n) {
            this.#logOnce('413', 'control refused an event batch as too large; sending smaller batches', { status, events: n, bytes, batchBytes: this.#budget });
            continue;
          }
        }
        this.#removeFront(batch);
        this.#drop('refused', n, { status, err });
        continue;
      }
      this.#removeFront(batch);
      this.sent += n;
      if (this.#failing) this.#logger.info('event reporting recovered', { queued: this.#queue.length });
      this.#failing = false;
    }
  }

  /**
   * Removes what is left of `batch` from the front of the queue: push() may have dropped its
   * oldest events meanwhile (queue_full), which leaves a suffix of the batch at the front.
   */
  #removeFront(batch: readonly object[]): void {
    const first = batch.indexOf(this.#queue[0] as object);
    if (first !== -1) this.#queue.splice(0, batch.length - first);
  }

  #drop(reason: EventDropReason, n: number, fields: Record<string, unknown> = {}): void {
    this.#dropped[reason] += n;
    const key = `${reason}:${String(fields.status ?? '')}`;
    this.#logOnce(key, 'connection events dropped', { reason, events: n, ...fields, note: 'logged once per reason; see tunnel_node_events_dropped_total' });
  }

  #logOnce(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.#logged.has(key)) return;
    this.#logged.add(key);
    this.#logger.warn(msg, fields);
  }
}
