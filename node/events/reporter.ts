import { EVENT_BATCH_MAX_BYTES, EVENT_BATCH_MAX_EVENTS } from '../../protocol/node-api-check.js';
import type { ConnectionEvent } from '../../protocol/node-api.js';
import { ControlError, type ControlClient, type EventBatchResult } from '../control-client.js';
import { monotonicMs } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import { spreadWait } from '../retry-jitter.js';
import { FairQueue } from './fair-queue.js';

/**
 * Why events were given up: the queue overflowed; control refused a batch for good (a 4xx; after
 * a 400, halving it down to the single events it refuses); or control refused single events of
 * a batch it otherwise recorded (its answer's `rejected`).
 */
export type EventDropReason = 'queue_full' | 'refused' | 'rejected';

/** The codes a control plane gives an event it refuses alone (EventBatchResultSchema's `rejected`). */
const REJECTION_CODES: ReadonlySet<string> = new Set(['VALIDATION_FAILED', 'UNKNOWN_FIELD']);

/** One queued event and its JSON size. */
interface Queued {
  event: ConnectionEvent;
  bytes: number;
}

/** `{"events":[` + `]}`: the body around the events. */
const ENVELOPE_BYTES = 13;
/** Smallest batch budget after 413s: one event of the largest size the schema allows fits. */
const MIN_BATCH_BYTES = 2048;
/**
 * Halvings of one refused batch (and its refused halves) before the rest of its pieces are
 * dropped whole on their next 400: at most about 2 x 24 + 1 requests per batch of up to 1000
 * events. Enough to find up to a few bad events in a batch (one takes 10 halvings); a control
 * plane that refuses most events (an older one refusing a type this relay sends for every
 * connection, or a proxy answering 400 to everything) costs a bounded number of requests per
 * batch instead of two per event.
 */
export const MAX_HALVINGS = 24;

/**
 * Sends connection and exposure events to the control plane in batches. Data paths only ever
 * call `push`, which never waits: the queue is bounded, and when full it drops the oldest event
 * of the member holding the most events in it (`queue_full`). A member reconnecting in a loop
 * (about four events a connection) pushes out its own events, not every other member's: with
 * the oldest dropped whatever its member, it emptied the queue of everyone else's before they
 * were sent while control was slow or unreachable. An event so dropped from the batch being
 * sent goes with it all the same: counted as dropped only if that batch is not delivered (it
 * was counted both dropped and sent).
 *
 * A batch holds at most EVENT_BATCH_MAX_EVENTS events and EVENT_BATCH_MAX_BYTES of JSON, so it
 * fits the control plane's body limit. What happens to a batch control does not accept depends
 * on why: unreachable, 5xx, 408, 429, 401 and 403 (not the batch's fault; the node credential
 * or control itself) keep it at the front of the queue for the next flush; 413 halves the
 * batch size (a limit smaller than ours) and retries at once; 400 (an older control plane
 * refuses a whole batch for one event outside its schema) sends the batch again in halves, at
 * once, down to the single events it refuses, so one bad event never takes the others with it
 * (at most MAX_HALVINGS halvings per batch, about 2 x MAX_HALVINGS + 1 requests; past that a
 * refused piece is dropped whole); a single event still refused, and any
 * other 4xx, is a permanent refusal: dropped and counted, so it can never block the events
 * behind it. A 429 or 503 with Retry-After (the control plane bounds each relay's batches and
 * events a minute) holds every batch until then: flushes before it send nothing, so the relay
 * slows down to what control takes and keeps its events (up to the queue's bound); counted in
 * `throttled`, logged once per episode. After a batch kept for any of these reasons, the next
 * scheduled one goes between half and all of the flush interval later (after the Retry-After's
 * hold, if any; #retryLater), on a timer of its own: not at the next tick of the interval. A control plane that reads events one by one answers 202 with the ones it refused
 * (`rejected`): those are counted as dropped, the rest as sent. Drops of each kind are logged
 * once per reason (and status or code), then only counted.
 */
export class EventReporter {
  /** In order, by member (EventReporter.push): who holds the most is known at once. */
  readonly #queue = new FairQueue<Queued>();
  #max: number;
  #client: Pick<ControlClient, 'sendEvents'>;
  #logger: Logger;
  #intervalMs: number;
  #budget: number;
  #timer: NodeJS.Timeout | undefined;
  /** The flush after a failed batch (#retryLater), while one is waiting. */
  #retry: NodeJS.Timeout | undefined;
  /** After a failed batch, the scheduled flushes (the interval's ticks) wait until this time (ms): #retry sends it. */
  #retryAt = 0;
  #random: () => number;
  #flushing: Promise<void> | undefined;
  /** Settles when the last flush or exclusive() asked for has finished (#inTurn). */
  #turn: Promise<void> = Promise.resolve();
  /** exclusive() calls waiting for their turn: a flush under way stops after its current batch. */
  #waiting = 0;
  #failing = false;
  #now: () => number;
  /** No batch is sent before this time (ms): the control plane's last Retry-After. */
  #notBefore = 0;
  /** Batches the control plane answered 429 (rate limited). */
  throttled = 0;
  #logged = new Set<string>();
  #dropped: Record<EventDropReason, number> = { queue_full: 0, refused: 0, rejected: 0 };
  /**
   * After a 400: the sizes of the next batches from the front of the queue (halves of the
   * refused batch, then halves of a refused half, ...), consumed as they are sent or dropped.
   */
  #split: number[] = [];
  /** Halvings since #split was last empty (bounded by MAX_HALVINGS). */
  #halvings = 0;
  /** The batch being sent, while it is (#drain). */
  #sending: ReadonlySet<Queued> | undefined;
  /**
   * Events push() took out of the batch being sent (queue_full): counted once its answer is in, as
   * sent (or refused) with it when it was delivered, as queue_full when it was not.
   */
  #cutFromBatch: { n: number; member: string; held: number } | undefined;
  sent = 0;

  /**
   * `random`: in [0, 1) (anything else counts as 0: drawShare), spreads the flush after a failed
   * batch (#retryLater); Math.random unless a test fixes it.
   */
  constructor(opts: { client: Pick<ControlClient, 'sendEvents'>; logger: Logger; maxQueue: number; intervalMs: number; maxBatchBytes?: number; now?: () => number; random?: () => number }) {
    // Monotonic: a Retry-After hold and a retry's time are durations, which a step of the wall
    // clock back (NTP) would stretch by the step (no batch sent meanwhile).
    this.#now = opts.now ?? monotonicMs;
    this.#random = opts.random ?? Math.random;
    this.#client = opts.client;
    this.#logger = opts.logger;
    this.#max = opts.maxQueue;
    this.#intervalMs = opts.intervalMs;
    this.#budget = Math.max(MIN_BATCH_BYTES, opts.maxBatchBytes ?? EVENT_BATCH_MAX_BYTES);
  }

  get queued(): number {
    return this.#queue.size;
  }

  /** Events given up, all reasons. */
  get dropped(): number {
    return this.#dropped.queue_full + this.#dropped.refused + this.#dropped.rejected;
  }

  droppedBy(reason: EventDropReason): number {
    return this.#dropped[reason];
  }

  /** The byte budget of one batch now (lower than EVENT_BATCH_MAX_BYTES after a 413). */
  get batchBytes(): number {
    return this.#budget;
  }

  /**
   * Queues `event` of `member`: the lease subject of the connection it is about, or '' (the
   * default) for an event of no member (an authentication that failed), which all share one
   * member's place.
   */
  push(event: ConnectionEvent, member = ''): void {
    this.#queue.push(member, { event, bytes: Buffer.byteLength(JSON.stringify(event)) });
    if (this.#queue.size > this.#max) {
      this.#dropFromLargest();
      this.#split = []; // the halves no longer line up with the queue's front: found again if need be
    }
  }

  /** Drops the oldest event of the member holding the most (the first to hold that many on a tie). */
  #dropFromLargest(): void {
    const { member, item, held } = this.#queue.dropFromLargest()!;
    // Out of the batch under way, it may be delivered all the same: counted when that is known.
    if (this.#sending?.has(item)) (this.#cutFromBatch ??= { n: 0, member, held }).n++;
    else this.#drop('queue_full', 1, { member, held });
  }

  /**
   * The batch under way has its answer: what push() took out of it meanwhile is counted now, as
   * dropped (queue_full) unless the batch was `delivered` (then it went with it, counted with it).
   */
  #batchAnswered(delivered: boolean): void {
    const cut = this.#cutFromBatch;
    this.#sending = undefined;
    this.#cutFromBatch = undefined;
    if (cut && !delivered) this.#drop('queue_full', cut.n, { member: cut.member, held: cut.held });
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#now() >= this.#retryAt) void this.flush();
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops the schedule and makes one last attempt to deliver what is queued. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#retry);
    await this.flush();
  }

  /**
   * After a batch that failed for a reason worth retrying: the next scheduled flush goes between
   * half and all of the interval later (spreadWait), counted from the end of the Retry-After's
   * hold when there is one, and the interval's ticks before it send nothing. The relays whose
   * batches failed together (a control plane restarting) asked again at their next tick, which
   * their start set, not the failure: relays started together asked together. An explicit
   * flush() (stop()'s last one) is not held back, except by the Retry-After (#drain).
   */
  #retryLater(): void {
    const now = this.#now();
    const wait = Math.max(0, this.#notBefore - now) + spreadWait(this.#intervalMs, this.#random);
    this.#retryAt = now + wait;
    if (this.#timer === undefined) return; // not started, or stopped
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => void this.flush(), wait);
    this.#retry.unref();
  }

  /** Sends everything queued, one batch at a time; stops at the first failure worth retrying. Takes its turn after an exclusive() asked for before it. */
  flush(): Promise<void> {
    this.#flushing ??= this.#inTurn(() => this.#drain()).finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /**
   * Runs `send` (the heartbeat) with no event batch in flight: after the flush under way, if any,
   * and before any flush asked for meanwhile. A heartbeat lists every exposure the relay holds
   * when `send` runs, and control sets every other exposure of the relay offline; sent beside a
   * batch, a heartbeat taken before X bound could reach control after the batch's "X online" and
   * set it offline again (with no later heartbeat if the relay then died: Y's opens refused as
   * offline, seen once in CI). One after the other, control applies them in the order the relay
   * saw them. A flush under way stops after its current batch (a relay reporting a stream of
   * events would otherwise keep its heartbeat waiting past control's online window); what it
   * leaves goes with the next flush.
   */
  exclusive<T>(send: () => Promise<T>): Promise<T> {
    this.#waiting++;
    return this.#inTurn(() => {
      this.#waiting--;
      return send();
    });
  }

  /** Runs `fn` once everything asked for before it has finished (flushes and heartbeats, first come first served). */
  async #inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.#turn;
    let done!: () => void;
    this.#turn = new Promise<void>((resolve) => (done = resolve));
    await before;
    try {
      return await fn();
    } finally {
      done();
    }
  }

  /** How many events from the front make the next batch (at least one). */
  #batchLength(): number {
    let bytes = ENVELOPE_BYTES;
    let n = 0;
    const most = Math.min(EVENT_BATCH_MAX_EVENTS, this.#split[0] ?? Infinity);
    for (const q of this.#queue) {
      if (n >= most) break;
      const next = bytes + q.bytes + (n > 0 ? 1 : 0);
      if (n > 0 && next > this.#budget) break;
      bytes = next;
      n++;
    }
    return n;
  }

  async #drain(): Promise<void> {
    if (this.#now() < this.#notBefore) return;
    while (this.#queue.size > 0 && this.#waiting === 0) {
      if (this.#split.length === 0) this.#halvings = 0;
      const n = this.#batchLength();
      const batch = this.#front(n);
      let result: EventBatchResult;
      this.#sending = new Set(batch);
      try {
        result = await this.#client.sendEvents(batch.map((q) => q.event));
      } catch (err) {
        const status = err instanceof ControlError ? err.opts.status : undefined;
        // A control plane not serving this relay's API level (an upgrade out of order) may be
        // upgraded any moment: its refusal keeps the events, as an unreachable one does.
        const levelRefused = err instanceof ControlError && err.opts.problemCode === 'API_LEVEL_UNSUPPORTED';
        const permanent = status !== undefined && status >= 400 && status < 500 && ![401, 403, 408, 429].includes(status) && !levelRefused;
        if (!permanent) {
          const retryAfterMs = err instanceof ControlError ? err.opts.retryAfterMs : undefined;
          if (retryAfterMs !== undefined && (status === 429 || status === 503)) this.#notBefore = this.#now() + retryAfterMs;
          if (status === 429) this.throttled++;
          if (!this.#failing && status === 429) {
            this.#logger.warn('control plane is rate-limiting event batches; holding them until its Retry-After (kept up to the queue bound)', {
              status,
              retryAfterMs,
              queued: this.#queue.size,
            });
          } else if (!this.#failing) this.#logger.warn('event reporting failed; will retry', { err, status, queued: this.#queue.size });
          this.#failing = true;
          this.#batchAnswered(false);
          this.#retryLater();
          return;
        }
        if (status === 413 && n > 1) {
          // Control's body limit is below ours: halve the batches (for good) and go on at once.
          const bytes = batch.reduce((sum, q) => sum + q.bytes + 1, ENVELOPE_BYTES);
          this.#budget = Math.max(MIN_BATCH_BYTES, Math.min(this.#budget, Math.floor(bytes / 2)));
          if (this.#batchLength() < n) {
            this.#batchAnswered(false); // sent again in smaller batches, without what was taken out
            this.#logOnce('413', 'control refused an event batch as too large; sending smaller batches', { status, events: n, bytes, batchBytes: this.#budget });
            continue;
          }
        }
        if (status === 400 && n > 1 && this.#halvings < MAX_HALVINGS) {
          // An older control plane refuses a whole batch for one event outside its schema: the
          // halves go at once, and the halves of a refused half, down to the events it refuses
          // (at most MAX_HALVINGS times per batch; then a refused piece is dropped whole).
          this.#halvings++;
          this.#consumeSplit(n);
          const half = Math.ceil(n / 2);
          this.#split.unshift(half, n - half);
          this.#batchAnswered(false); // sent again in halves, without what was taken out
          this.#logOnce('400', 'control refused an event batch; sending it in halves to keep the events it accepts', { status, events: n });
          continue;
        }
        this.#batchAnswered(true); // refused for good: each of its events counted so
        this.#removeFront(batch);
        this.#consumeSplit(n);
        this.#drop('refused', n, { status, err });
        continue;
      }
      this.#batchAnswered(true);
      this.#removeFront(batch);
      this.#consumeSplit(n);
      // Rejections name events of this batch by index; anything else in the answer is ignored.
      const rejected = new Map<number, EventBatchResult['rejected'][number]>();
      for (const r of result.rejected) if (r.index < n && !rejected.has(r.index)) rejected.set(r.index, r);
      this.sent += n - rejected.size;
      for (const [index, r] of rejected) {
        this.#drop('rejected', 1, { code: r.code, field: r.field, type: batch[index]!.event.type, index, events: n });
      }
      if (this.#failing) this.#logger.info('event reporting recovered', { queued: this.#queue.size });
      this.#failing = false;
      // Answered: the ticks send again at once (with an injected wall clock that stepped back,
      // a #retryAt kept past a delivered batch left every tick until it sending nothing).
      this.#retryAt = 0;
    }
  }

  /**
   * Removes what is left of `batch` from the front of the queue: push() may have dropped some of
   * its events meanwhile (queue_full), which leaves the rest of the batch, in order, at the front.
   */
  #removeFront(batch: readonly Queued[]): void {
    const sent = new Set(batch);
    while (this.#queue.size > 0 && sent.has(this.#queue.peek()!)) this.#queue.shift();
  }

  /** The first `n` events of the queue (fewer if it holds fewer). */
  #front(n: number): Queued[] {
    const front: Queued[] = [];
    for (const q of this.#queue) {
      if (front.length >= n) break;
      front.push(q);
    }
    return front;
  }

  /** `n` events from the front were sent or dropped: what is left of the halves to send. */
  #consumeSplit(n: number): void {
    let left = n;
    while (left > 0 && this.#split.length > 0) {
      const take = Math.min(left, this.#split[0]!);
      left -= take;
      if (take === this.#split[0]) this.#split.shift();
      else this.#split[0] = this.#split[0]! - take;
    }
  }

  #drop(reason: EventDropReason, n: number, fields: Record<string, unknown> = {}): void {
    this.#dropped[reason] += n;
    // A rejection's code is the control plane's text: any code it made up shares one key, or a
    // control plane naming each rejection differently would log (and keep a key for) each event.
    const code = typeof fields.code === 'string' ? (REJECTION_CODES.has(fields.code) ? fields.code : 'other') : '';
    const key = `${reason}:${String(fields.status ?? code)}`;
    this.#logOnce(key, 'connection events dropped', { reason, events: n, ...fields, note: 'logged once per reason; see tunnel_node_events_dropped_total' });
  }

  #logOnce(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.#logged.has(key)) return;
    this.#logged.add(key);
    this.#logger.warn(msg, fields);
  }
}
