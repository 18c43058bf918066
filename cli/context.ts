import type { Dispatcher } from 'undici';

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

/** Control characters other than line feed and tab: C0, DEL and C1 (0x9b is a CSI on its own). */
// eslint-disable-next-line no-control-regex -- the control characters are what is matched
const TERMINAL_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * `text` with every control character but line feed and tab written as `\u00XX`: what a command
 * prints may quote what a control plane or relay chose (a relay's version, a scope, a device login's
 * URL), and an escape sequence in it would reach the user's terminal (retitle the window, write the
 * clipboard with OSC 52, erase lines). In --json output, where JSON.stringify leaves DEL and C1 as
 * they are, the same escape keeps the string's value.
 */
export function terminalText(text: string): string {
  return text.replace(TERMINAL_CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
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
