import { setFlagsFromString } from 'node:v8';

/**
 * V8's optimizing compilers are held off while tunnel-node starts (issue 11: an idle relay at
 * most 60 MB RSS). Resolving, linking and running its ~160 ES modules makes Node's own loader
 * functions hot (path normalisation, URL parsing, realpath): on Node 24 V8 compiled about 18 of
 * them with Maglev and one with TurboFan during start-up, on Node 20 and 22 one with TurboFan.
 * That code never runs again, but compiling it brings the compilers' own code, several MB of the
 * `node` binary's text, into the process for as long as it lives. Measured (idle relay after
 * 30 s, smaps): Node 24 71 to 62.5 MB (binary text 31 to 23 MB), Node 22 66.7 to 60.2,
 * Node 20 55.2 to 52.0.
 *
 * holdStartupTiering turns the compilers off (node/main.ts, before the rest of the relay is
 * imported; this module imports only node:v8, so nothing is hot yet) and its release turns them
 * back on once the relay is ready (node/relay-main.ts), so
 * the data path is compiled exactly as before: what is hot while serving tiers up then. The
 * compilers' pages come in with the first traffic that makes a function hot.
 *
 * The flags are set at run time (v8.setFlagsFromString), and V8 has no call that reads a flag,
 * so the release sets each held compiler back to its default, which differs by Node major:
 * TurboFan is on in all of them, Maglev only from Node 24 (V8 13.6; off in Node 20's V8 11.3 and
 * Node 22's 12.4). `--max-opt`, which would not need that, has no effect set at run time (measured
 * on Node 24). Majors not measured hold nothing, and neither does a process started with a flag
 * of its own about the compilers (startup-tiering.test.ts checks the table against each Node's
 * `--v8-options`).
 */

export type Compiler = 'turbofan' | 'maglev';

/** The optimizing compilers on by default in `major` that the start-up holds (none: not measured). */
export function heldCompilers(major: number): readonly Compiler[] {
  if (major >= 20 && major <= 23) return ['turbofan'];
  if (major === 24) return ['turbofan', 'maglev'];
  return [];
}

/** Node or V8 flags that choose the compilers themselves: with any of them, nothing is held. */
const OWN_CHOICE = /--(no-)?(turbofan|opt|maglev|jitless|lite-mode|max-opt|always-turbofan|always-opt|always-sparkplug)\b/;

/** True when argv or NODE_OPTIONS has a flag about the compilers. */
export function choosesCompilers(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return execArgv.some((a) => OWN_CHOICE.test(a)) || OWN_CHOICE.test(nodeOptions ?? '');
}

export interface TieringHold {
  /** What was turned off (empty: nothing held). */
  readonly held: readonly Compiler[];
  /** Turns them back on; idempotent. */
  release(): void;
}

/** `execArgv` and `nodeOptions` come from the entry file (node/main.ts: process.execArgv, NODE_OPTIONS). */
export function holdStartupTiering(o: { major?: number; execArgv: readonly string[]; nodeOptions: string | undefined; setFlags?: (flags: string) => void }): TieringHold {
  const major = o.major ?? Number(process.versions.node.split('.')[0]);
  const setFlags = o.setFlags ?? setFlagsFromString;
  const held = choosesCompilers(o.execArgv, o.nodeOptions) ? [] : heldCompilers(major);
  for (const c of held) setFlags(`--no-${c}`);
  let released = held.length === 0;
  return {
    held,
    release() {
      if (released) return;
      released = true;
      for (const c of held) setFlags(`--${c}`);
    },
  };
}
