import { requireSsh2 } from './protocol.js';

interface ChannelPrototype {
  destroy(this: ChannelLike): ChannelLike;
}
interface ChannelLike {
  readonly writableFinished: boolean;
  end(): unknown;
  close(): unknown;
}

let installed = false;
/** ssh2's own `Channel#destroy`, before installQuietChannelDestroy replaced it (for tests). */
export let originalChannelDestroy: ChannelPrototype['destroy'] | undefined;

/**
 * ssh2's `Channel#destroy` (lib/Channel.js) is `end(); close()`, and Node's stream machinery
 * calls it by itself (autoDestroy) once a channel has finished both ways, that is after its
 * writable side finished. `end()` on a finished Writable does nothing but build an
 * ERR_STREAM_ALREADY_FINISHED error, stack trace included, which no one receives (no callback is
 * passed): about 50-80 µs of CPU per channel in each process of a tunnel (V8 CPU profiles of
 * bench:e2e's first-byte connections, 3% of each process's busy time; issue 11). This skips that
 * `end()` when the writable side has already finished; everything else is ssh2's: an unfinished
 * channel still ends (EOF) and then closes, and `close()` still sends CLOSE once. Idempotent;
 * throws "ssh2 internals changed" if ssh2's Channel has no `destroy` of its own.
 */
export function installQuietChannelDestroy(): void {
  if (installed) return;
  const { Channel } = requireSsh2('ssh2/lib/Channel.js') as { Channel?: { prototype: ChannelPrototype } };
  const proto = Channel?.prototype;
  if (!proto || !Object.hasOwn(proto, 'destroy') || typeof proto.destroy !== 'function') throw new Error('ssh2 internals changed: lib/Channel.js has no Channel#destroy');
  originalChannelDestroy = proto.destroy;
  proto.destroy = function destroy(this: ChannelLike) {
    if (!this.writableFinished) this.end();
    this.close();
    return this;
  };
  installed = true;
}
