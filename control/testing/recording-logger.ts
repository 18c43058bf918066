import type { Logger, LogFields } from '../../shared/logger.js';

/** A logger that keeps its warnings (tests count what a request logged); info and error go nowhere. */
export function recordingLogger(): Logger & { warnings: { msg: string; fields?: LogFields }[] } {
  const warnings: { msg: string; fields?: LogFields }[] = [];
  const logger: Logger & { warnings: typeof warnings } = {
    warnings,
    info() {},
    warn(msg, fields) {
      warnings.push({ msg, ...(fields ? { fields } : {}) });
    },
    error() {},
    child: () => logger,
  };
  return logger;
}
