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
 * Drizzle maps a placeholder's value with its column's encoder, except null: a nullable column
 * whose encoder does not take null (timestamps, jsonb) must not get a plain placeholder.
 */
export function preparedPerDb<T>(build: (db: Db) => T): (db: Db) => T {
  const made = new WeakMap<Db, T>();
  return (db) => {
    let statement = made.get(db);
    if (statement === undefined) {
      statement = build(db);
      made.set(db, statement);
    }
    return statement;
  };
}
