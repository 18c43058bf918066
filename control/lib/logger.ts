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
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code === undefined ? {} : { code }) };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}
