import { Column, DrizzleQueryError, entityKind, getTableName, is, Param, Placeholder, SQL, Subquery } from 'drizzle-orm';
import type { Db } from './client.js';

/**
 * A prepared statement (drizzle `.prepare()` with `sql.placeholder`s), built once per database
 * handle instead of on every request. Drizzle builds a statement's SQL text from the query
 * builder each time it runs (about a sixth of the control plane's CPU per lease, issue 11); a
 * prepared one keeps the text and only fills in the values. On Postgres the driver (postgres.js)
 * also keeps it as a named server-side statement per connection, so a repeat run sends Bind and
 * Execute without Parse and Describe. For the hot paths only: every API call's caller lookup and
 * the lease issuance queries.
 *
 * On postgres.js a statement made here also runs through `directExecute`: the same SQL, values
 * and rows as drizzle's `execute`, without the work drizzle repeats on every run.
 *
 * Drizzle maps a placeholder's value with its column's encoder, except null: a nullable column
 * whose encoder does not take null (timestamps, jsonb) must not get a plain placeholder.
 */
export function preparedPerDb<T>(build: (db: Db) => T): (db: Db) => T {
  const made = new WeakMap<Db, T>();
  return (db) => {
    let statement = made.get(db);
    if (statement === undefined) {
      statement = directExecute(build(db));
      made.set(db, statement);
    }
    return statement;
  };
}

/** What a drizzle prepared statement on postgres.js holds (drizzle-orm/postgres-js/session.js, PostgresJsPreparedQuery). */
interface PostgresJsPrepared {
  client: { unsafe(text: string, params: unknown[], options: { prepare: boolean }): PromiseLike<unknown> & { values(): PromiseLike<unknown[][]> } };
  queryString: string;
  params: unknown[];
  prepare: boolean;
  fields?: { path: string[]; field: unknown }[];
  joinsNotNullableMap?: Record<string, boolean>;
  customResultMapper?: unknown;
  execute(values?: Record<string, unknown>): Promise<unknown>;
}

interface Decoder {
  mapFromDriverValue(value: unknown): unknown;
}

/**
 * Replaces a postgres.js prepared statement's `execute` with one that sends the same SQL and
 * values and maps the rows exactly as drizzle's `mapResultRow` does (nested paths, column
 * decoders, a left-joined table whose columns are all null becoming null), and errors as
 * drizzle's `DrizzleQueryError` with the driver's error as its cause. What drizzle works out
 * again on every run from its query objects is worked out once here: which parameter is which
 * placeholder and its encoder (`fillPlaceholders`), and each result column's path, decoder and
 * table (`mapResultRow` asks `is(field, Column)` several times per column and row, through the
 * Proxy of a subquery's fields), plus its tracing and cache wrappers: a sixth of the caller
 * lookup's CPU in the driver's process (issue 11). Drizzle's query logger and cache are not
 * called (the control plane configures neither). Other drivers (PGlite) and statements with
 * drizzle's own result mappers keep drizzle's `execute`.
 */
function directExecute<T>(statement: T): T {
  const q = statement as unknown as PostgresJsPrepared;
  const kind = (q.constructor as { [entityKind]?: string } | undefined)?.[entityKind];
  if (kind !== 'PostgresJsPreparedQuery' || q.customResultMapper) return statement;
  const { client, prepare, joinsNotNullableMap } = q;
  const named = q.params.map((p) =>
    is(p, Placeholder) ? { name: p.name, encode: null } : is(p, Param) && is(p.value, Placeholder) ? { name: p.value.name, encode: p.encoder } : null,
  );
  const { queryString, kept } = onePerPlaceholder(q.queryString, named);
  const fills = kept.map((i): ((values: Record<string, unknown>) => unknown) => {
    const p = q.params[i];
    const placeholder = named[i];
    if (!placeholder) return () => p;
    const { name, encode } = placeholder;
    return (values) => {
      if (!(name in values)) throw new Error(`No value for placeholder "${name}" was provided`);
      return encode ? encode.mapToDriverValue(values[name]) : values[name];
    };
  });
  const columns = q.fields?.map(({ path, field }) => {
    // As mapResultRow picks it (SQL's decoder is internal to drizzle, hence the casts).
    const decoderOf = (s: unknown): Decoder => (s as { decoder: Decoder }).decoder;
    const decoder: Decoder = is(field, Column)
      ? field
      : is(field, SQL)
        ? decoderOf(field)
        : is(field, Subquery)
          ? decoderOf(field._.sql)
          : decoderOf((field as SQL.Aliased).sql);
    const table = joinsNotNullableMap && is(field, Column) && path.length === 2 ? getTableName(field.table) : null;
    return { path, last: path[path.length - 1]!, decoder, table };
  });
  const mapRow = (row: unknown[]): Record<string, unknown> => {
    const result: Record<string, unknown> = {};
    let nullify: Record<string, string | false> | undefined;
    for (let i = 0; i < columns!.length; i++) {
      const { path, last, decoder, table } = columns![i]!;
      let node = result;
      for (let j = 0; j < path.length - 1; j++) {
        const chunk = path[j]!;
        if (!(chunk in node)) node[chunk] = {};
        node = node[chunk] as Record<string, unknown>;
      }
      const raw = row[i];
      const value = raw === null ? null : decoder.mapFromDriverValue(raw);
      node[last] = value;
      if (table !== null) {
        nullify ??= {};
        const object = path[0]!;
        if (!(object in nullify)) nullify[object] = value === null ? table : false;
        else if (typeof nullify[object] === 'string' && nullify[object] !== table) nullify[object] = false;
      }
    }
    if (nullify) for (const object in nullify) {
      const table = nullify[object];
      if (typeof table === 'string' && !joinsNotNullableMap![table]) result[object] = null;
    }
    return result;
  };
  q.execute = async (values: Record<string, unknown> = {}) => {
    const params = fills.map((fill) => fill(values));
    try {
      if (!columns) return await client.unsafe(queryString, params, { prepare });
      const rows = await client.unsafe(queryString, params, { prepare }).values();
      // A loop, not rows.map: the driver's rows are an Array subclass with its own
      // Symbol.species, which sends map through V8's slow species lookup on every call.
      const mapped: Record<string, unknown>[] = [];
      for (let i = 0; i < rows.length; i++) mapped.push(mapRow(rows[i]!));
      return mapped;
    } catch (e) {
      throw new DrizzleQueryError(queryString, params, e as Error);
    }
  };
  return statement;
}

/**
 * One parameter per placeholder: drizzle numbers every use of a placeholder as a parameter of its
 * own (`$1`, `$7`, `$19` for one `sub`), so the driver infers, serialises and sends the same value
 * again for each, and the server binds each (the one-statement lease sent 41 parameters for 28
 * values, issue 11). Uses of one placeholder with the same encoder (or none) become one
 * parameter: the text's `$n` are renumbered and `kept` lists, per new parameter, the index of
 * the old one it stands for. The text is only rewritten when its `$n` outside quotes are exactly
 * `$1`..`$n` in order, as drizzle writes them; anything else is left as it was.
 */
export function onePerPlaceholder(
  text: string,
  named: readonly ({ name: string; encode: unknown } | null)[],
): { queryString: string; kept: number[] } {
  const unchanged = { queryString: text, kept: named.map((_, i) => i) };
  const uses: { at: number; end: number; index: number }[] = [];
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '$') {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
      if (j === i + 1) return unchanged; // a dollar quote or anything else drizzle does not write
      uses.push({ at: i, end: j, index: Number(text.slice(i + 1, j)) - 1 });
      i = j - 1;
    }
  }
  if (quote || uses.length !== named.length || uses.some((u, k) => u.index !== k)) return unchanged;
  const kept: number[] = [];
  const numberOf = new Map<string, Map<unknown, number>>();
  const renumbered = uses.map((_, i) => {
    const p = named[i];
    const again = p ? numberOf.get(p.name)?.get(p.encode) : undefined;
    if (again !== undefined) return again;
    kept.push(i);
    if (p) numberOf.set(p.name, (numberOf.get(p.name) ?? new Map<unknown, number>()).set(p.encode, kept.length));
    return kept.length;
  });
  let out = '';
  let from = 0;
  uses.forEach((u, i) => {
    out += `${text.slice(from, u.at)}$${renumbered[i]}`;
    from = u.end;
  });
  return { queryString: out + text.slice(from), kept };
}
