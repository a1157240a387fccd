// ESO target.template (engine v2: Go text/template with sprig) -> Liquid, for
// the common subset only: `{{ .key }}` and pipelines / calls of b64enc,
// b64dec, toJson, fromJson (of a whole JSON secret), upper, lower, trim,
// quote, default; `{{-` / `-}}` trim markers. Everything else is refused with
// the template line it is on, never guessed.

/** How `.key` of the template's data map is read in Liquid (undefined: not known). */
export type KeyExpr = (key: string) => { readonly expr: string; readonly wholeSecret?: string } | undefined;

export type Translated = { readonly ok: true; readonly liquid: string } | { readonly ok: false; readonly row: number; readonly why: string };

const FILTERS: Readonly<Record<string, string>> = {
  b64enc: 'base64_encode',
  b64dec: 'base64_decode',
  toJson: 'json',
  upper: 'upcase',
  lower: 'downcase',
  trim: 'strip',
  // sprig quote is Go's %q: the same as JSON for printable text.
  quote: 'json',
};

/** Translates one Go template; `row` in a failure is the template's 1-based line. */
export function translateTemplate(source: string, keyExpr: KeyExpr): Translated {
  let out = '';
  let pos = 0;
  const rowAt = (i: number): number => source.slice(0, i).split('\n').length;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    const text = source.slice(pos, open === -1 ? undefined : open);
    if (text.includes('{%') || text.includes('%}')) return { ok: false, row: rowAt(pos), why: 'literal "{%" or "%}" (Liquid tag syntax) in the text' };
    out += text;
    if (open === -1) break;
    const close = source.indexOf('}}', open + 2);
    if (close === -1) return { ok: false, row: rowAt(open), why: 'unclosed "{{"' };
    let inner = source.slice(open + 2, close);
    const trimLeft = inner.startsWith('- ');
    const trimRight = inner.endsWith(' -');
    if (trimLeft) inner = inner.slice(2);
    if (trimRight) inner = inner.slice(0, -2);
    const expr = translateAction(inner.trim(), keyExpr);
    if (typeof expr !== 'string') return { ok: false, row: rowAt(open), why: expr.why };
    out += `{{${trimLeft ? '-' : ''} ${expr} ${trimRight ? '-' : ''}}}`;
    pos = close + 2;
  }
  return { ok: true, liquid: out };
}

type Step = { readonly fn: string; readonly args: readonly string[] };

function tokens(s: string): string[] | undefined {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+)/y;
  let end = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    out.push(m[1]!);
    end = re.lastIndex;
  }
  return s.slice(end).trim() === '' ? out : undefined;
}

function translateAction(action: string, keyExpr: KeyExpr): string | { why: string } {
  if (/^(?:if|else|end|range|with|define|template|block|break|continue)\b/.test(action) || action.startsWith('/*')) {
    return { why: `"{{ ${action.split(/\s/)[0]} }}" (control structures are not converted; write the Liquid by hand)` };
  }
  if (action.includes('$') || action.includes('(') || action.includes(':=')) return { why: `"{{ ${action} }}" (variables and parenthesized expressions are not converted)` };
  const toks = tokens(action);
  if (!toks || toks.length === 0) return { why: `"{{ ${action} }}" is not understood` };
  const stages: string[][] = [[]];
  for (const t of toks) {
    if (t === '|') stages.push([]);
    else stages.at(-1)!.push(t);
  }
  // The first stage: `.key`, or `fn ... .key` (a call whose last argument is the value).
  const [first, ...rest] = stages;
  if (!first || first.length === 0) return { why: `"{{ ${action} }}" is not understood` };
  const head = first.at(-1)!;
  const steps: Step[] = [];
  if (first.length > 1) steps.push({ fn: first[0]!, args: first.slice(1, -1) });
  for (const s of rest) {
    if (s.length === 0) return { why: `"{{ ${action} }}" has an empty pipeline stage` };
    steps.push({ fn: s[0]!, args: s.slice(1) });
  }
  if (!/^\.[A-Za-z0-9_-]+$/.test(head)) return { why: `"${head}" in "{{ ${action} }}" (only .KEY of the secret data is converted)` };
  const key = head.slice(1);
  const value = keyExpr(key);
  if (!value) return { why: `".${key}" is not a key this ExternalSecret defines in data, or comes from several dataFrom entries` };
  let expr = value.expr;
  for (const [i, step] of steps.entries()) {
    if (step.fn === 'fromJson') {
      if (i !== 0 || value.wholeSecret === undefined) return { why: `"fromJson" in "{{ ${action} }}" (converted only directly on a whole JSON secret)` };
      expr = value.wholeSecret;
      continue;
    }
    if (step.fn === 'default') {
      const arg = step.args[0];
      if (step.args.length !== 1 || !arg || !/^"(?:[^"\\]|\\.)*"$/.test(arg)) return { why: `"default" in "{{ ${action} }}" (converted with one quoted string only)` };
      expr += ` | default: ${arg}`;
      continue;
    }
    const liquid = FILTERS[step.fn];
    if (!liquid || step.args.length > 0) return { why: `"${step.fn}" in "{{ ${action} }}" (not in the converted subset: b64enc, b64dec, toJson, fromJson, upper, lower, trim, quote, default)` };
    expr += ` | ${liquid}`;
  }
  return expr;
}
