/** Structured logger: constant messages, variables in fields. Never pass tokens, keys or passwords. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export const noopLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  child() {
    return noopLogger;
  },
};

/** JSON lines to a writable (stderr by default). */
export function jsonLogger(
  write: (line: string) => void,
  base: Record<string, unknown> = {},
  now: () => Date = () => new Date(),
): Logger {
  const emit = (level: string, msg: string, fields?: Record<string, unknown>) => {
    write(JSON.stringify({ time: now().toISOString(), level, msg, ...base, ...fields }, errorReplacer) + '\n');
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => jsonLogger(write, { ...base, ...fields }, now),
  };
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return describeError(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/**
 * What a log line says about an error: name, message, code and the chain of causes. A failed
 * database query (drizzle's DrizzleQueryError) is logged as its SQL text and the database's
 * reason (SQLSTATE code and message) only: its own message lists the query's parameters, which
 * are user input and may be secrets, while the reason sits in `cause`.
 */
export function describeError(err: Error, depth = 0): Record<string, unknown> {
  const e = err as Error & { code?: unknown; query?: unknown; params?: unknown };
  const out: Record<string, unknown> = { name: e.name };
  if (typeof e.query === 'string' && 'params' in e) {
    out.message = 'failed query';
    out.query = e.query.slice(0, 1000);
  } else {
    out.message = e.message.slice(0, 1000);
  }
  if (e.code !== undefined) out.code = e.code;
  if (e.cause instanceof Error && depth < 4) out.cause = describeError(e.cause, depth + 1);
  return out;
}
