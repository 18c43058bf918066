/** Every index a JSON query plan (`EXPLAIN (FORMAT JSON)`, Postgres or PGlite) reads. */
export function indexesIn(plan: unknown): string[] {
  const found: string[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (typeof n['Index Name'] === 'string') found.push(n['Index Name']);
    Object.values(n).forEach(walk);
  };
  walk(plan);
  return found;
}
