import { ControlError, type ControlClient, type NodeHeartbeatRequest } from './control-client.js';
import type { EventReporter } from './events/reporter.js';
import { heartbeatRetryDelay } from './heartbeat-retry.js';
import type { Logger } from '../shared/logger.js';
import type { Clock } from '../shared/clock.js';
import { ClockSkewWatch, type ClockSkewStatus } from './clock-offset.js';

export interface HeartbeatLoopOptions {
  control: Pick<ControlClient, 'heartbeat'>;
  /** The event reporter: a heartbeat never goes beside an event batch (EventReporter.exclusive). */
  reporter: Pick<EventReporter, 'exclusive'>;
  logger: Logger;
  /** This relay's clock: each answer's server_time is held against it (clock-offset.ts). */
  clock: Clock;
  intervalMs: number;
  /** When this relay process started (its clock): sent with every heartbeat. */
  startedAt: string;
  /** What the heartbeat says, taken when it is sent. */
  report(): Omit<NodeHeartbeatRequest, 'started_at'>;
  /** True once the relay is stopping: a failed heartbeat is not retried then. */
  stopping(): boolean;
}

/**
 * The relay's heartbeat: one at start, then every `intervalMs`, and soon again after one failed
 * (heartbeat-retry.ts). status() is /healthz's `heartbeat`.
 */
export class HeartbeatLoop {
  #opts: HeartbeatLoopOptions;
  #timer: NodeJS.Timeout | undefined;
  /**
   * Why the last heartbeat failed (/healthz): the control plane's problem code when it sent one
   * (API_LEVEL_UNSUPPORTED: a control plane older than this relay), else the client's. While
   * heartbeats fail the control plane takes this relay's exposures for offline, which /healthz
   * did not show at all.
   */
  #error: string | undefined;
  /** Heartbeats failed in a row (0: the last one was answered). */
  #failures = 0;
  /** The retry of a failed heartbeat, when one is waiting (heartbeat-retry.ts). */
  #retry: NodeJS.Timeout | undefined;
  /** A heartbeat sent or waiting its turn (EventReporter.exclusive) and not yet answered. */
  #pending = false;
  /** This relay's clock against the control plane's, from each answer's server_time. */
  readonly #skew: ClockSkewWatch;

  constructor(opts: HeartbeatLoopOptions) {
    this.#opts = opts;
    this.#skew = new ClockSkewWatch(opts.logger);
  }

  /** /healthz's `heartbeat`. */
  status(): { failing: boolean; last_error: string | null } & ClockSkewStatus {
    return { failing: this.#failures > 0, last_error: this.#error ?? null, ...this.#skew.status() };
  }

  /** The last estimate of the control plane's clock minus this relay's (ms), undefined before the first. */
  get clockOffsetMs(): number | undefined {
    return this.#skew.offsetMs;
  }

  /** Sends one now, then one every `intervalMs`. */
  start(): void {
    void this.beat();
    this.#timer = setInterval(() => void this.beat(), this.#opts.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    clearTimeout(this.#retry);
  }

  /** The relay's clock in ms; NaN when it throws (no estimate then, and the heartbeat goes on). */
  #nowMs(): number {
    try {
      return this.#opts.clock.now().getTime();
    } catch {
      return NaN;
    }
  }

  /** An answered heartbeat's server_time: nothing in it (or a logger that throws) fails the heartbeat. */
  #noteClock(answer: unknown, sentMs: number, receivedMs: number): void {
    try {
      const serverTime = typeof answer === 'object' && answer !== null ? (answer as { server_time?: unknown }).server_time : undefined;
      this.#skew.note(serverTime, sentMs, receivedMs);
    } catch {
      // The estimate is advice; the heartbeat was answered.
    }
  }

  /** Sends one now: at start, at each interval, as a retry (tests await it). */
  async beat(): Promise<void> {
    // One at a time: the list of exposures is taken when a heartbeat is sent, so a later one
    // adds nothing to one still waiting. Queued behind each other, the heartbeats of a control
    // plane that does not answer (each takes the client's timeout) piled up without bound, and
    // the final event flush at shutdown waited for every one of them: a SIGTERMed relay did not exit.
    if (this.#pending) return;
    this.#pending = true;
    const { control, logger } = this.#opts;
    try {
      // Never beside an event batch (EventReporter.exclusive): the list is taken when it is sent.
      // Timed inside it: the wait for its turn is no part of the round trip.
      let sentMs = NaN;
      let receivedMs = NaN;
      const answer = await this.#opts.reporter.exclusive(async () => {
        const body = { started_at: this.#opts.startedAt, ...this.#opts.report() };
        sentMs = this.#nowMs();
        const a = await control.heartbeat(body);
        receivedMs = this.#nowMs();
        return a;
      });
      this.#noteClock(answer, sentMs, receivedMs);
      this.#error = undefined;
      if (this.#failures > 0) logger.info('heartbeat recovered');
      this.#failures = 0;
      clearTimeout(this.#retry);
    } catch (err) {
      this.#error = err instanceof ControlError ? (err.opts.problemCode ?? err.code) : 'HEARTBEAT_FAILED';
      if (this.#failures === 0) logger.warn('heartbeat failed', { err, problemCode: this.#error });
      this.#failures++;
      // Retried soon rather than at the next interval (heartbeat-retry.ts), unless the control
      // plane refused it for good (the credential: retrying changes nothing) or the relay is stopping.
      const retryable = !(err instanceof ControlError) || err.retryable;
      if (retryable && !this.#opts.stopping()) {
        clearTimeout(this.#retry);
        const retryAfterMs = err instanceof ControlError ? err.opts.retryAfterMs : undefined;
        this.#retry = setTimeout(() => void this.beat(), heartbeatRetryDelay(this.#failures, this.#opts.intervalMs, retryAfterMs));
        this.#retry.unref();
      }
    } finally {
      this.#pending = false;
    }
  }
}
