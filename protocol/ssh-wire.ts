/**
 * SSH wire primitives (RFC 4251 §5): uint32, uint64 and `string` (uint32 length + bytes),
 * read through a bounded reader and written through a growable writer.
 *
 * Every bound check throws {@link SshWireError} with a stable code; nothing here lets Node's
 * own RangeError escape, so parsers built on top can translate failures into their own
 * typed errors without catching unrelated exceptions.
 */

export type SshWireErrorCode =
  /** A read needed more bytes than remain. */
  | 'WIRE_TRUNCATED'
  /** `end()` found bytes after the last field. */
  | 'WIRE_TRAILING_BYTES'
  /** A length field is larger than the caller's cap. */
  | 'WIRE_TOO_LONG'
  /** A string that must be text is not valid UTF-8. */
  | 'WIRE_BAD_UTF8'
  /** A value given to the writer does not fit its wire type. */
  | 'WIRE_RANGE';

export class SshWireError extends Error {
  override readonly name = 'SshWireError';
  constructor(
    readonly code: SshWireErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const UINT32_MAX = 0xffff_ffff;
const UINT64_MAX = 0xffff_ffff_ffff_ffffn;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Reads SSH wire fields from a buffer, front to back. Returned buffers are copies, so a caller
 * may keep them after the input is reused or mutated.
 */
export class SshReader {
  #buf: Buffer;
  #pos = 0;

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#pos;
  }

  remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number, what: string): void {
    if (n > this.remaining()) {
      throw new SshWireError('WIRE_TRUNCATED', `truncated ${what}: need ${n} bytes, ${this.remaining()} left`);
    }
  }

  uint8(): number {
    this.#need(1, 'byte');
    return this.#buf[this.#pos++] as number;
  }

  uint32(): number {
    this.#need(4, 'uint32');
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  uint64(): bigint {
    this.#need(8, 'uint64');
    const v = this.#buf.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** Exactly `n` raw bytes. */
  bytes(n: number): Buffer {
    this.#need(n, 'bytes');
    const out = Buffer.from(this.#buf.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return out;
  }

  /** An SSH `string` as raw bytes; `max` caps the declared length before anything is copied. */
  string(max: number = UINT32_MAX): Buffer {
    const len = this.uint32();
    if (len > max) throw new SshWireError('WIRE_TOO_LONG', `string of ${len} bytes exceeds the cap of ${max}`);
    this.#need(len, 'string body');
    return this.bytes(len);
  }

  /** An SSH `string` that must be valid UTF-8 text. */
  text(max?: number): string {
    const raw = this.string(max);
    try {
      return utf8.decode(raw);
    } catch {
      throw new SshWireError('WIRE_BAD_UTF8', 'string is not valid UTF-8');
    }
  }

  /** Asserts that every byte was consumed. */
  end(): void {
    if (this.remaining() !== 0) {
      throw new SshWireError('WIRE_TRAILING_BYTES', `${this.remaining()} trailing bytes`);
    }
  }
}

/** Builds an SSH wire message; the methods chain. */
export class SshWriter {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(b: Buffer): this {
    this.#chunks.push(b);
    this.#length += b.length;
    return this;
  }

  uint8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new SshWireError('WIRE_RANGE', `not a byte: ${v}`);
    return this.#push(Buffer.of(v));
  }

  uint32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) throw new SshWireError('WIRE_RANGE', `not a uint32: ${v}`);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v);
    return this.#push(b);
  }

  uint64(v: bigint): this {
    if (v < 0n || v > UINT64_MAX) throw new SshWireError('WIRE_RANGE', `not a uint64: ${v}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(v);
    return this.#push(b);
  }

  /** Raw bytes, no length prefix. */
  bytes(b: Uint8Array): this {
    return this.#push(Buffer.from(b));
  }

  /** An SSH `string`: uint32 length then the bytes (UTF-8 for JS strings). */
  string(v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
    this.uint32(b.length);
    return this.#push(b);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }
}
