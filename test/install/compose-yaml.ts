/**
 * Just enough YAML to read infra/container/compose.yaml in a test: block mappings by indentation,
 * flow sequences and mappings ([a, "b"], { k: v }), plain, "double" and 'single' quoted scalars
 * (every scalar stays a string), full-line and trailing comments. Anything else (block sequences,
 * anchors, multi-line scalars) throws, so the test fails rather than reading the file wrongly.
 */
export type YamlValue = string | YamlValue[] | { [key: string]: YamlValue };

class YamlError extends Error {
  readonly code = 'YAML_UNSUPPORTED';
}

interface Line {
  indent: number;
  text: string;
  no: number;
}

export function parseComposeYaml(text: string): YamlValue {
  const lines: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    if (/^\s*(#|$)/.test(raw)) return;
    if (/\t/.test(raw.slice(0, raw.length - raw.trimStart().length))) throw new YamlError(`line ${i + 1}: a tab in the indentation`);
    lines.push({ indent: raw.length - raw.trimStart().length, text: raw.trim(), no: i + 1 });
  });
  const [value, next] = block(lines, 0, 0);
  if (next !== lines.length) throw new YamlError(`line ${lines[next]!.no}: unexpected indentation`);
  return value;
}

/** The mapping whose keys sit at `indent`, from line `at`; returns it and the first line after it. */
function block(lines: Line[], at: number, indent: number): [Record<string, YamlValue>, number] {
  const out: Record<string, YamlValue> = {};
  let i = at;
  while (i < lines.length && lines[i]!.indent === indent) {
    const { text, no } = lines[i]!;
    if (text.startsWith('- ') || text === '-') throw new YamlError(`line ${no}: block sequences are not supported; write [a, b]`);
    const m = /^("[^"]*"|'[^']*'|[^"'\s][^:]*?):(?:\s+(.*))?$/.exec(text);
    if (!m) throw new YamlError(`line ${no}: expected "key: value"`);
    const key = unquote(m[1]!);
    if (Object.hasOwn(out, key)) throw new YamlError(`line ${no}: ${key} given twice`);
    const rest = m[2]?.trim() ?? '';
    i++;
    if (rest === '' || rest.startsWith('#')) {
      const child = lines[i];
      if (child && child.indent > indent) [out[key], i] = block(lines, i, child.indent);
      else out[key] = '';
    } else {
      out[key] = scalarOrFlow(rest, no);
    }
  }
  return [out, i];
}

function scalarOrFlow(s: string, no: number): YamlValue {
  if (/^[&*!|>]/.test(s)) throw new YamlError(`line ${no}: anchors, tags and block scalars are not supported`);
  const [value, end] = flow(s, 0, false, no);
  const tail = s.slice(end).trim();
  if (tail !== '' && !tail.startsWith('#')) throw new YamlError(`line ${no}: unexpected "${tail}"`);
  return value;
}

/** One value from s[i]; `inFlow`: inside [ ] or { }, where , ] } end a plain scalar. Returns it and where it ended. */
function flow(s: string, i: number, inFlow: boolean, no: number): [YamlValue, number] {
  while (s[i] === ' ') i++;
  const c = s[i];
  if (c === '[' || c === '{') {
    const close = c === '[' ? ']' : '}';
    const list: YamlValue[] = [];
    const map: Record<string, YamlValue> = {};
    i++;
    for (;;) {
      while (s[i] === ' ') i++;
      if (s[i] === close) return [c === '[' ? list : map, i + 1];
      if (c === '[') {
        const [v, j] = flow(s, i, true, no);
        list.push(v);
        i = j;
      } else {
        // A quoted key may hold a colon; a plain one ends at the first.
        const quoted = s[i] === '"' || s[i] === "'" ? flow(s, i, true, no) : undefined;
        const colon = s.indexOf(':', quoted ? quoted[1] : i);
        if (colon < 0 || (quoted && s.slice(quoted[1], colon).trim() !== '')) throw new YamlError(`line ${no}: expected "key: value" in { }`);
        const [v, j] = flow(s, colon + 1, true, no);
        map[quoted ? (quoted[0] as string) : s.slice(i, colon).trim()] = v;
        i = j;
      }
      while (s[i] === ' ') i++;
      if (s[i] === ',') i++;
      else if (s[i] !== close) throw new YamlError(`line ${no}: expected , or ${close}`);
    }
  }
  if (c === '"') {
    const m = /^"(?:[^"\\]|\\.)*"/.exec(s.slice(i));
    if (!m) throw new YamlError(`line ${no}: an unterminated "string"`);
    return [JSON.parse(m[0]) as string, i + m[0].length];
  }
  if (c === "'") {
    const m = /^'(?:[^']|'')*'/.exec(s.slice(i));
    if (!m) throw new YamlError(`line ${no}: an unterminated 'string'`);
    return [unquote(m[0]), i + m[0].length];
  }
  const m = (inFlow ? /^[^,\]}]*/ : /^.*?(?=\s+#|$)/).exec(s.slice(i))!;
  return [m[0].trim(), i + m[0].length];
}

function unquote(s: string): string {
  if (s.startsWith('"')) return JSON.parse(s) as string;
  if (s.startsWith("'")) return s.slice(1, -1).replace(/''/g, "'");
  return s;
}
