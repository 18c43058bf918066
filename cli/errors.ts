/** Exit codes of `tunnel` (DESIGN "CLI"). */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_LOGGED_IN: 3,
  NOT_PERMITTED: 4,
  UNREACHABLE: 5,
  /** tunnel open: nobody exposes the name now (X is not connected). */
  EXPOSURE_OFFLINE: 6,
  /** tunnel open: X (or the relay, for egress) could not connect to the service itself. */
  SERVICE_UNREACHABLE: 7,
  /** tunnel open: X is connected but exposes the name on another port. */
  NO_SUCH_PORT: 8,
  /**
   * A stop (Ctrl-C, SIGTERM, SIGHUP) ended a command before it had done its work: a login's wait,
   * a prompt, a request in flight, `tunnel open --stdio` before its session. 128 + SIGINT, as a
   * shell reports a command Ctrl-C killed, and what a second stop exits with at once (main.ts).
   * `tunnel expose` and `tunnel open --listen` run until stopped: a stop is their end, exit 0.
   */
  STOPPED: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** CliError code of what a stop ended before it was done (a request, a wait, a prompt, a connect): exit EXIT.STOPPED. */
export const STOPPED = 'STOPPED';

/** An expected failure: printed as one line, no stack, with its exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  /** The API's stable error code, when the failure came from the control plane. */
  readonly code: string | undefined;
  constructor(exitCode: ExitCode, message: string, opts: { code?: string; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'CliError';
    this.exitCode = exitCode;
    this.code = opts.code;
  }
}

export class UsageError extends CliError {
  readonly command: string;
  constructor(command: string, message: string) {
    super(EXIT.USAGE, message);
    this.name = 'UsageError';
    this.command = command;
  }
}

export const notLoggedIn = (why = 'not logged in') => new CliError(EXIT.NOT_LOGGED_IN, `${why}; run: tunnel login`);
