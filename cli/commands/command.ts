import type { Context } from '../context.js';

export interface Command {
  name: string;
  summary: string;
  /** Full `--help` text, with an example. */
  usage: string;
  run(ctx: Context, argv: string[]): Promise<number>;
}
