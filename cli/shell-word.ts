/**
 * `word` as one word for /bin/sh (what ssh runs a ProxyCommand in, and what a user pastes a
 * printed command into): as it is when it holds nothing the shell reads, else in single quotes.
 */
export function shellWord(word: string): string {
  return /^[\w.:/,@%+=-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
