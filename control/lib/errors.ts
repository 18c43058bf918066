import type { ErrorCode } from '../../protocol/error-codes.js';

/**
 * The one error type routes throw. `app.onError` turns it into RFC 9457 problem+json.
 * `message` is for humans and must never contain a token, key or password.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** RFC 6749 `error` member for token-endpoint errors. */
  readonly oauthError: string | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { cause?: unknown; retryable?: boolean; oauthError?: string; headers?: Record<string, string> } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.oauthError = opts.oauthError;
    this.headers = opts.headers;
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);
export const forbidden = (why: string) => new AppError('FORBIDDEN', why);

/** The caller's user is gone or disabled (at authentication, or found so under a lock later): the token no longer counts. */
export const callerGone = () => new AppError('TOKEN_INVALID', 'the user of this token no longer exists or is disabled');
