/**
 * Property-based fuzz of every operation in /openapi.json (issue 9, must-show 3), generated from
 * the document itself: path parameters, queries and bodies drawn from each operation's schemas,
 * then bent (a field dropped, an unknown one added, a value swapped for a NUL byte, a huge or
 * negative number, a date Postgres cannot hold, the wrong type, a lone surrogate) or replaced by
 * any JSON at all, sent as JSON or as a form where the operation takes one, with the credential
 * its security scheme names (or a wrong one, or none). Every answer must be documented for that
 * operation: never a 5xx, a status the document lists, its content type, and a body that
 * validates against the documented schema. Runs through the real HTTP server on PGlite and on
 * Postgres with a bounded number of examples per operation (FUZZ_RUNS, default 25).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, heartbeat, putExposure, uniq } from '../../control/testing/fixtures.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 25);

type Schema = Record<string, unknown>;
interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface Operation {
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

/** Values that have broken servers before: NUL, control characters, out-of-range numbers and dates. */
const NASTY: unknown[] = [
  '\u0000',
  'a\u0000b',
  '\u001b[31m',
  '\ud800',
  '',
  ' ',
  'x'.repeat(5000),
  '99999-01-01T00:00:00Z',
  '0000-01-01T00:00:00Z',
  3_000_000_000,
  2 ** 53 + 2,
  -1,
  1.5,
  1e308,
  null,
  true,
  [],
  {},
  '../../etc/passwd',
  '%00',
  '__proto__',
];
const nasty = fc.constantFrom(...NASTY);

function resolve(doc: Doc, s: Schema): Schema {
  const ref = s.$ref;
  if (typeof ref === 'string') return resolve(doc, doc.components.schemas[ref.replace('#/components/schemas/', '')]!);
  // One schema wrapped (a body read item by item documents its items as { allOf: [{ $ref }] }).
  if (Array.isArray(s.allOf) && s.allOf.length === 1) return resolve(doc, s.allOf[0] as Schema);
  return s;
}

/** Values that follow `schema` (as far as a generator can), at most `depth` levels deep. */
function fromSchema(doc: Doc, raw: Schema, depth = 0): fc.Arbitrary<unknown> {
  const s = resolve(doc, raw);
  if ('const' in s) return fc.constant(s.const);
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]));
  const alts = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (alts) return fc.oneof(...alts.map((a) => fromSchema(doc, a, depth)));
  const type = s.type;
  if (Array.isArray(type)) return fc.oneof(...type.map((t) => fromSchema(doc, { ...s, type: t }, depth)));
  switch (type) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer': {
      // Beyond 32 bits too (fc.integer stops there): columns are int4, JSON numbers are not.
      const min = typeof s.minimum === 'number' ? s.minimum : Number.MIN_SAFE_INTEGER;
      const max = typeof s.maximum === 'number' ? s.maximum : Number.MAX_SAFE_INTEGER;
      const small = fc.integer({ min: Math.max(min, -(2 ** 31)), max: Math.min(max, 2 ** 31 - 1) });
      const wide = fc.maxSafeInteger().filter((v) => v >= min && v <= max);
      return max > 2 ** 31 - 1 || min < -(2 ** 31) ? fc.oneof(small, wide, fc.constantFrom(...[2 ** 31, 3_000_000_000, 2 ** 53 - 1].filter((v) => v <= max))) : small;
    }
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true });
    case 'string': {
      const min = typeof s.minLength === 'number' ? s.minLength : 0;
      const max = typeof s.maxLength === 'number' ? Math.min(s.maxLength, 300) : 64;
      if (typeof s.pattern === 'string') {
        const re = new RegExp(s.pattern);
        // stringMatching rarely reaches a minimum length; text patterns with one (passwords,
        // tokens) accept plain ASCII, which a length-bounded string gives at once.
        const maxLen = (s.maxLength as number | undefined) ?? Infinity;
        if (min > 0) {
          return fc
            .oneof(
              fc.stringMatching(re),
              fc.string({ minLength: min, maxLength: Math.max(min, max), unit: fc.constantFrom(...'abcxyzABC0129-_.~') }),
              fc.string({ minLength: min, maxLength: Math.max(min, max) }),
            )
            .filter((v) => v.length >= min && v.length <= maxLen && re.test(v));
        }
        return fc.stringMatching(re).filter((v) => v.length <= ((s.maxLength as number | undefined) ?? Infinity));
      }
      return fc.string({ minLength: min, maxLength: Math.max(min, max), unit: 'grapheme' });
    }
    case 'array': {
      if (depth > 3) return fc.constant([]);
      const items = (s.items as Schema | undefined) ?? {};
      return fc.array(fromSchema(doc, items, depth + 1), {
        minLength: typeof s.minItems === 'number' ? s.minItems : 0,
        maxLength: Math.min(typeof s.maxItems === 'number' ? s.maxItems : 3, 3),
      });
    }
    case 'object': {
      const props = (s.properties as Record<string, Schema> | undefined) ?? {};
      if (depth > 3 || Object.keys(props).length === 0) return fc.constant({});
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(props)) record[k] = fromSchema(doc, v, depth + 1);
      return fc.record(record, { requiredKeys: ((s.required as string[] | undefined) ?? []).filter((k) => k in props) });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** A valid-looking value, the same bent in one place, or anything at all. */
function fuzzed(doc: Doc, schema: Schema): fc.Arbitrary<unknown> {
  const valid = fromSchema(doc, schema);
  const bent = valid.chain((v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fc.oneof(fc.constant(v), nasty);
    const keys = Object.keys(v);
    return fc.oneof(
      // Swap one field for a nasty value.
      keys.length
        ? fc.tuple(fc.constantFrom(...keys), nasty).map(([k, n]) => ({ ...v, [k]: n }))
        : nasty.map((n) => ({ x: n })),
      // Drop one field.
      keys.length ? fc.constantFrom(...keys).map((k) => Object.fromEntries(Object.entries(v).filter(([kk]) => kk !== k))) : fc.constant(v),
      // Add an unknown one.
      nasty.map((n) => ({ ...v, unknown_field: n })),
    );
  });
  return fc.oneof({ weight: 3, arbitrary: valid }, { weight: 4, arbitrary: bent }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
}

/** A path parameter: valid by its schema, or nasty text, URL-encoded either way. */
function pathValue(doc: Doc, schema: Schema): fc.Arbitrary<string> {
  return fc
    .oneof({ weight: 3, arbitrary: fromSchema(doc, schema).map(String) }, { weight: 1, arbitrary: nasty.map(String) }, { weight: 1, arbitrary: fc.string() })
    .map((v) => {
      try {
        const encoded = encodeURIComponent(v) || 'x';
        // "." and ".." are dot segments: every URL parser removes them (RFC 3986 §5.2.4), and
        // WHATWG URL (fetch) treats "%2E" as a dot too, so `/v1/egress-targets/%2E` reached
        // `/v1/egress-targets/`, another path (a 405 no document lists). No client can send
        // them as a parameter; send a value next to them instead.
        return /^(\.|%2e){1,2}$/i.test(encoded) ? `${encoded}_` : encoded;
      } catch {
        // A lone surrogate: send the bytes a careless encoder would (not valid UTF-8).
        return '%ED%A0%80';
      }
    });
}

/** Validators of the documented response bodies, by operation and status. */
function responseValidator(doc: Doc, schema: Schema): z.ZodType {
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [k, k === '$ref' && typeof x === 'string' ? x.replace('#/components/schemas/', '#/$defs/') : rewrite(x)]),
      );
    }
    return v;
  };
  return z.fromJSONSchema({ ...(rewrite(schema) as Schema), $defs: rewrite(doc.components.schemas) } as Parameters<typeof z.fromJSONSchema>[0]);
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`OpenAPI fuzz of every operation (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    let doc: Doc;
    const creds: Record<string, string> = {};
    before(async () => {
      // Long polls of the revocation feed answer at once here (a fuzzed ?wait= would hold each for up to 25 s).
      t = await makeApp({ settings: { authRateLimit: 1_000_000, leaseRateLimit: 1_000_000, revocationFeedMaxWait: 0 } });
      s = await serveTestApp(t);
      doc = (await s.call('GET', '/openapi.json')).body as Doc;
      const admin = await t.user(uniq('admin'), 'admin');
      const served = { ...t, call: s.call };
      const node = await enrollNode(served, admin.token);
      await putExposure(served, admin.token, 'fuzz-exp');
      await heartbeat(served, node, [{ name: 'fuzz-exp', port: 22 }]);
      creds.bearer = admin.token;
      creds.nodeToken = node.token;
    });
    after(() => s?.close());

    it('covers every operation of the document', () => {
      const ops = Object.values(doc.paths).flatMap((item) => Object.keys(item));
      assert.ok(ops.length >= 25, `only ${ops.length} operations`);
    });

    // One test per operation, so a failure names it; the list is read from the document at run time.
    it('no operation answers anything its document does not say', async () => {
      for (const [path, item] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(item)) {
          if (process.env.FUZZ_TRACE) process.stderr.write(`fuzz ${method} ${path}\n`);
          await fuzzOperation(doc, s, creds, path, method.toUpperCase(), op);
        }
      }
    });
  });
}

async function fuzzOperation(doc: Doc, s: ServedApp, creds: Record<string, string>, path: string, method: string, op: Operation): Promise<void> {
  const params = op.parameters ?? [];
  const pathArb = fc.record(
    Object.fromEntries(params.filter((p) => p.in === 'path').map((p) => [p.name, pathValue(doc, p.schema)])) as Record<string, fc.Arbitrary<string>>,
  );
  const queryArb = fc.record(
    Object.fromEntries(params.filter((p) => p.in === 'query').map((p) => [p.name, fc.oneof(fromSchema(doc, p.schema).map(String), nasty.map(String))])),
    { requiredKeys: [] },
  );
  const contentTypes = Object.keys(op.requestBody?.content ?? {});
  const bodyArb = contentTypes.length
    ? fc.tuple(fc.constantFrom(...contentTypes), fuzzed(doc, op.requestBody!.content[contentTypes[0]!]!.schema))
    : fc.constant(null);
  const scheme = Object.keys(op.security?.[0] ?? {})[0];
  const authArb = scheme ? fc.constantFrom('own', 'own', 'own', 'none', 'garbage', 'other') : fc.constantFrom('none', 'none', 'garbage');
  const validators = new Map<string, z.ZodType>();

  await fc.assert(
    fc.asyncProperty(pathArb, queryArb, bodyArb, authArb, fc.boolean(), async (pv, qv, body, auth, extraQuery) => {
      const url = new URL(path.replace(/\{(\w+)\}/g, (_m, n: string) => pv[n] ?? 'x'), s.url);
      for (const [k, v] of Object.entries(qv)) url.searchParams.set(k, String(v));
      if (extraQuery) url.searchParams.set('unknown_param', '1');
      const headers: Record<string, string> = {};
      if (auth === 'own' && scheme) headers.authorization = `Bearer ${creds[scheme]}`;
      if (auth === 'other' && scheme) headers.authorization = `Bearer ${creds[scheme === 'bearer' ? 'nodeToken' : 'bearer']}`;
      if (auth === 'garbage') headers.authorization = 'Bearer not.a.token';
      let payload: string | undefined;
      if (body) {
        const [type, value] = body;
        headers['content-type'] = type;
        payload =
          type === 'application/x-www-form-urlencoded' && value && typeof value === 'object' && !Array.isArray(value)
            ? new URLSearchParams(Object.entries(value).map(([k, v]): [string, string] => [k, typeof v === 'string' ? v : JSON.stringify(v)])).toString()
            : JSON.stringify(value);
      }
      const res = await fetch(url, { method, headers, body: payload });
      const text = await res.text();
      const where = `${method} ${url.pathname}${url.search} ${payload?.slice(0, 300) ?? ''} -> ${res.status} ${text.slice(0, 300)}`;
      assert.ok(res.status < 500, `5xx: ${where}`);
      const documented = op.responses[String(res.status)];
      assert.ok(documented, `status ${res.status} is not documented: ${where}`);
      const contents = Object.keys(documented.content ?? {});
      if (contents.length === 0) {
        assert.equal(text, '', `undocumented body: ${where}`);
        return;
      }
      const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
      assert.ok(contents.includes(type), `content type ${type} not in ${contents.join(', ')}: ${where}`);
      const key = `${res.status} ${type}`;
      let validate = validators.get(key);
      if (!validate) validators.set(key, (validate = responseValidator(doc, documented.content![type]!.schema)));
      const parsed = validate.safeParse(JSON.parse(text));
      assert.ok(parsed.success, `body does not match the documented schema (${parsed.error?.issues[0]?.path.join('.')}: ${parsed.error?.issues[0]?.message}): ${where}`);
    }),
    { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined, endOnFailure: true },
  );
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
