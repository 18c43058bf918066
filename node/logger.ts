/**
 * Structured logging for the relay. Messages are constant strings; variables go in fields.
 * Never log lease tokens, certificate blobs or private keys: log lease ids, serials and
 * key fingerprints instead.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{ sessionId }`). */
  child(fields: LogFields): Logger;
}

export const noopLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  child() {
    return noopLogger;
  },
};

function serialize(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message, code: (value as { code?: unknown }).code };
  return value;
}

/** Keys every line has; a field of the same name is written as `field_<name>` instead. */
const RESERVED = new Set(['time', 'level', 'msg']);

/** One JSON object per line, written through `write` (stderr in main.ts). */
export function createJsonLogger(write: (line: string) => void, base: LogFields = {}, now: () => Date = () => new Date()): Logger {
  const emit = (level: string, msg: string, fields?: LogFields): void => {
    const out: LogFields = { time: now().toISOString(), level, msg };
    for (const [k, v] of Object.entries({ ...base, ...fields })) out[RESERVED.has(k) ? `field_${k}` : k] = serialize(v);
    write(`${JSON.stringify(out)}\n`);
  };
  return {
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createJsonLogger(write, { ...base, ...fields }, now),
  };
}

/** Collects lines in memory; for tests that assert on what was logged. */
export function createMemoryLogger(): Logger & { lines: { level: string; msg: string; fields: LogFields }[] } {
  const lines: { level: string; msg: string; fields: LogFields }[] = [];
  const make = (base: LogFields): Logger => ({
    info: (msg, fields) => lines.push({ level: 'info', msg, fields: { ...base, ...fields } }),
    warn: (msg, fields) => lines.push({ level: 'warn', msg, fields: { ...base, ...fields } }),
    error: (msg, fields) => lines.push({ level: 'error', msg, fields: { ...base, ...fields } }),
    child: (fields) => make({ ...base, ...fields }),
  });
  return Object.assign(make({}), { lines });
}
