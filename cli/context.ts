import type { Dispatcher } from 'undici';
import { terminalText } from './terminal-text.js';

/** Everything a command touches outside itself, so tests can run commands in-process. */
export interface Context {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  homeDir: string;
  /** HTTP dispatcher for the API (tests pass an undici MockAgent). */
  dispatcher?: Dispatcher;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  stopSignal: AbortSignal;
}

/** One line (or block) of a command's output to stdout, with its control characters escaped (terminalText). */
export function out(ctx: Context, line: string): void {
  const text = terminalText(line);
  ctx.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** One line to stderr (messages, progress), with its control characters escaped (terminalText). */
export function info(ctx: Context, line: string): void {
  const text = terminalText(line);
  ctx.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}
