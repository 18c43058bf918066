import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SshReader, SshWireError, SshWriter } from './ssh-wire.js';

function wireCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SshWireError, `expected SshWireError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

describe('SshWriter / SshReader', () => {
  it('encodes RFC 4251 types big-endian with uint32 length prefixes', () => {
    const buf = new SshWriter().uint32(0x01020304).uint64(0x0102030405060708n).string('ab').string(Buffer.of(9)).toBuffer();
    assert.equal(buf.toString('hex'), '01020304' + '0102030405060708' + '000000026162' + '0000000109');
    const r = new SshReader(buf);
    assert.equal(r.uint32(), 0x01020304);
    assert.equal(r.uint64(), 0x0102030405060708n);
    assert.equal(r.text(), 'ab');
    assert.deepEqual(r.string(), Buffer.of(9));
    assert.equal(r.remaining(), 0);
    r.end();
  });

  it('reads uint64 values above 2^53 exactly', () => {
    const r = new SshReader(Buffer.from('ffffffffffffffff', 'hex'));
    assert.equal(r.uint64(), 0xffff_ffff_ffff_ffffn);
  });

  it('reports truncation, oversize, trailing bytes and bad UTF-8 with typed codes', () => {
    assert.equal(wireCode(() => new SshReader(Buffer.alloc(3)).uint32()), 'WIRE_TRUNCATED');
    assert.equal(wireCode(() => new SshReader(Buffer.alloc(7)).uint64()), 'WIRE_TRUNCATED');
    assert.equal(wireCode(() => new SshReader(Buffer.alloc(0)).uint8()), 'WIRE_TRUNCATED');
    assert.equal(wireCode(() => new SshReader(Buffer.from('00000005616263', 'hex')).string()), 'WIRE_TRUNCATED');
    assert.equal(wireCode(() => new SshReader(Buffer.from('ffffffff', 'hex')).string()), 'WIRE_TRUNCATED');
    assert.equal(wireCode(() => new SshReader(Buffer.from('00000003616263', 'hex')).string(2)), 'WIRE_TOO_LONG');
    assert.equal(wireCode(() => new SshReader(Buffer.from('00000001ff', 'hex')).text()), 'WIRE_BAD_UTF8');
    assert.equal(wireCode(() => new SshReader(Buffer.alloc(1)).end()), 'WIRE_TRAILING_BYTES');
    assert.equal(wireCode(() => new SshReader(Buffer.alloc(1)).bytes(2)), 'WIRE_TRUNCATED');
  });

  it('refuses values that do not fit their wire type', () => {
    assert.equal(wireCode(() => new SshWriter().uint32(-1)), 'WIRE_RANGE');
    assert.equal(wireCode(() => new SshWriter().uint32(2 ** 32)), 'WIRE_RANGE');
    assert.equal(wireCode(() => new SshWriter().uint32(1.5)), 'WIRE_RANGE');
    assert.equal(wireCode(() => new SshWriter().uint64(-1n)), 'WIRE_RANGE');
    assert.equal(wireCode(() => new SshWriter().uint64(2n ** 64n)), 'WIRE_RANGE');
    assert.equal(wireCode(() => new SshWriter().uint8(256)), 'WIRE_RANGE');
  });

  it('returns copies, not views of the input', () => {
    const input = Buffer.from('0000000161', 'hex');
    const s = new SshReader(input).string();
    input[4] = 0x62;
    assert.equal(s.toString(), 'a');
  });

  type Field = { k: 'u32'; v: number } | { k: 'u64'; v: bigint } | { k: 'str'; v: Uint8Array };
  const field: fc.Arbitrary<Field> = fc.oneof(
    fc.nat({ max: 0xffff_ffff }).map((v) => ({ k: 'u32' as const, v })),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ k: 'u64' as const, v })),
    fc.uint8Array({ maxLength: 64 }).map((v) => ({ k: 'str' as const, v })),
  );

  it('reads back whatever it wrote (property)', () => {
    fc.assert(
      fc.property(fc.array(field, { maxLength: 20 }), (fields) => {
        const w = new SshWriter();
        for (const f of fields) {
          if (f.k === 'u32') w.uint32(f.v);
          else if (f.k === 'u64') w.uint64(f.v);
          else w.string(f.v);
        }
        const buf = w.toBuffer();
        assert.equal(buf.length, w.length);
        const r = new SshReader(buf);
        for (const f of fields) {
          if (f.k === 'u32') assert.equal(r.uint32(), f.v);
          else if (f.k === 'u64') assert.equal(r.uint64(), f.v);
          else assert.deepEqual(new Uint8Array(r.string()), f.v);
        }
        r.end();
      }),
      { numRuns: 500 },
    );
  });

  it('throws only SshWireError on arbitrary input (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.constantFrom('u8', 'u32', 'u64', 'str', 'text', 'end')), (bytes, ops) => {
        const r = new SshReader(Buffer.from(bytes));
        try {
          for (const op of ops) {
            if (op === 'u8') r.uint8();
            else if (op === 'u32') r.uint32();
            else if (op === 'u64') r.uint64();
            else if (op === 'str') r.string(32);
            else if (op === 'text') r.text();
            else r.end();
          }
        } catch (err) {
          assert.ok(err instanceof SshWireError, String(err));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
