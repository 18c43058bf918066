import { randomBytes } from 'node:crypto';

/** Identifier generation, injected so tests can predict ids. */
export interface Ids {
  /** A short random id for an SSH session (connection). */
  session(): string;
  /** A random id for a bridged channel pair. */
  channel(): string;
}

export const randomIds: Ids = {
  session: () => `s_${randomBytes(8).toString('hex')}`,
  channel: () => `c_${randomBytes(8).toString('hex')}`,
};
