// What a template sees. Each fetched secret version is turned into its view
// once (JSON parsed, frozen) and cached by the SecretValue object, so a render
// of 1,000 files parses each secret once, not once per file.
//
// SSM parameters read like secrets: a JSON-object value is parsed, `raw` is the
// value as stored (a StringList too: "a,b,c", split it with `| split: ","`),
// and `meta` adds version, type, lastModifiedDate and labels. A parameterPath
// is an object keyed by each parameter's name relative to the path
// (`secrets.app['db/password']`), each entry read as one parameter; its `raw`
// is the JSON object of the entries' raw values, its `meta.parameters` the
// entries' meta.
//
// An integer beyond 2^53 in a JSON secret reads as its exact digits (a BigInt
// made from the source text; see parseExact).
//
// `meta.region`: the AWS region that served the value (the aws source only;
// source.failoverRegion after a failover).
import type { SecretValue } from '../types.ts';
import { isJsonObject } from './template.ts';

/** `meta.<name>` in a template. */
export interface SecretMetaView {
  readonly versionId: string;
  readonly arn: string;
  readonly name: string;
  /** ISO 8601, or null when the source does not say (the file source). */
  readonly createdDate: string | null;
  readonly stages: readonly string[];
  /** SSM: the parameter's version number (a parameterPath: the digest of its (name, version) list). */
  readonly version?: number | string;
  /** SSM: String, StringList or SecureString (absent for a parameterPath). */
  readonly type?: string;
  /** SSM: ISO 8601 (a parameterPath: its newest parameter's). */
  readonly lastModifiedDate?: string | null;
  /** SSM: the labels known to point at this version (the configured label). */
  readonly labels?: readonly string[];
  /** The aws source: the AWS region that served this value (source.failoverRegion after a failover). */
  readonly region?: string;
  /** SSM parameterPath: each parameter's meta, keyed by its name relative to the path. */
  readonly parameters?: Readonly<Record<string, SecretMetaView>>;
}

/** One secret version as templates see it. */
export interface SecretView {
  /**
   * `secrets.<name>`: the parsed, frozen JSON object when the SecretString is a
   * JSON object; otherwise the string itself (SecretBinary: base64 of the bytes).
   * A SecretString that starts with `{` but is not valid JSON is a plain
   * string: `secrets.x.field` then fails as an undefined variable, and the
   * error says the secret is not valid JSON (never quoting the parser, whose
   * message quotes the input).
   */
  readonly value: string | Readonly<Record<string, unknown>>;
  /** `raw.<name>`: the exact SecretString (SecretBinary: base64). */
  readonly raw: string;
  readonly meta: SecretMetaView;
  /** True when the SecretString looks like a JSON object but does not parse. */
  readonly invalidJson: boolean;
  /**
   * True when the SecretString is a JSON object nested deeper than
   * MAX_JSON_DEPTH: `value` is then the string, as for invalid JSON (writing
   * such a value out as JSON would overflow the stack).
   */
  readonly tooDeep: boolean;
  /** True for SecretBinary. */
  readonly binary: boolean;
}

/**
 * The deepest JSON secret templates may read. Real secrets are a few levels
 * deep; JSON.stringify (every object a template writes out) overflows the
 * stack at a few thousand.
 */
export const MAX_JSON_DEPTH = 1000;

const views = new WeakMap<SecretValue, SecretView>();

export function viewOf(value: SecretValue): SecretView {
  let view = views.get(value);
  if (!view) {
    view = makeView(value);
    views.set(value, view);
  }
  return view;
}

function makeView(value: SecretValue): SecretView {
  const entries = value.parameter?.entries;
  if (entries) return pathView(value, entries);
  const bytes = value.secretString === undefined ? value.secretBinary : undefined;
  const binary = bytes !== undefined;
  const raw = bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') : (value.secretString ?? '');
  let parsed: Readonly<Record<string, unknown>> | undefined;
  let invalidJson = false;
  let tooDeep = false;
  if (!binary && /^[\t\n\r ]*\{/.test(raw)) {
    try {
      const candidate: unknown = parseExact(raw);
      if (isJsonObject(candidate)) {
        parsed = freezeWithin(candidate, MAX_JSON_DEPTH);
        tooDeep = parsed === undefined;
      }
    } catch {
      // Deliberately dropped: V8's SyntaxError quotes the input, which is the secret.
      invalidJson = true;
    }
  }
  return Object.freeze({ value: parsed ?? raw, raw, meta: metaOf(value), invalidJson, tooDeep, binary });
}

function metaOf(value: SecretValue, parameters?: Readonly<Record<string, SecretMetaView>>): SecretMetaView {
  const p = value.parameter;
  return Object.freeze({
    versionId: value.versionId,
    arn: value.arn,
    name: value.name,
    createdDate: value.createdDate ? value.createdDate.toISOString() : null,
    stages: Object.freeze([...value.versionStages]),
    ...(value.region ? { region: value.region } : {}),
    ...(p
      ? {
          version: parameters ? value.versionId : Number(value.versionId),
          ...(p.type ? { type: p.type } : {}),
          lastModifiedDate: p.lastModifiedDate ? p.lastModifiedDate.toISOString() : null,
          labels: Object.freeze([...value.versionStages]),
        }
      : {}),
    ...(parameters ? { parameters } : {}),
  });
}

/** A parameterPath: an object of its parameters' views, by relative name (no prototype: a name is just a name). */
function pathView(value: SecretValue, entries: ReadonlyMap<string, SecretValue>): SecretView {
  const values = Object.create(null) as Record<string, unknown>;
  const metas = Object.create(null) as Record<string, SecretMetaView>;
  for (const [rel, entry] of entries) {
    const view = viewOf(entry);
    values[rel] = view.value;
    metas[rel] = view.meta;
  }
  return Object.freeze({
    value: Object.freeze(values),
    raw: value.secretString ?? '{}',
    meta: metaOf(value, Object.freeze(metas)),
    invalidJson: false,
    tooDeep: false,
    binary: false,
  });
}

/**
 * JSON.parse, except that an integer beyond 2^53 (which a double cannot hold:
 * 12345678901234567890123 would read 1.2345678901234568e+22) becomes a BigInt
 * made from its source text, so a template writes it as stored, as `key:` does
 * (value.ts). Templates print a BigInt as its digits and `json` writes it as a
 * JSON number (template.ts); arithmetic on it is refused. The reviver (which
 * sees each number's source text) runs only when the text has such a run of digits.
 */
function parseExact(raw: string): unknown {
  if (!/\d{16}/.test(raw)) return JSON.parse(raw);
  return JSON.parse(raw, function (_key, value: unknown, context?: { source?: string }) {
    if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)) return BigInt(context.source);
    return value;
  });
}

/**
 * Parsed JSON is shared by every file that reads it: no template may change it.
 * Freezes `root` and everything in it, or returns undefined (leaving it
 * unfrozen: it is then dropped) when it is nested deeper than `maxDepth`.
 */
function freezeWithin<T extends object>(root: T, maxDepth: number): T | undefined {
  // An explicit stack: a deeply nested secret must not overflow the call stack.
  const stack: [object, number][] = [[root, 1]];
  const seen: object[] = [];
  while (stack.length > 0) {
    const [o, depth] = stack.pop()!;
    if (depth > maxDepth) return undefined;
    seen.push(o);
    for (const v of Object.values(o)) {
      if (typeof v === 'object' && v !== null) stack.push([v as object, depth + 1]);
    }
  }
  for (const o of seen) Object.freeze(o);
  return root;
}

/** The part of the context shared by every file of one render. */
export interface TemplateContext {
  readonly secrets: Readonly<Record<string, unknown>>;
  readonly raw: Readonly<Record<string, string>>;
  readonly meta: Readonly<Record<string, SecretMetaView>>;
  /** Views by local name, for error messages and `secret:` files. */
  readonly views: ReadonlyMap<string, SecretView>;
}

/**
 * The context for one render: every declared secret that has a value. A
 * declared secret without a value (it could not be fetched) is absent, so a
 * template that uses it fails naming it. The maps have no prototype: a secret
 * named `__proto__` or `constructor` is just a name.
 */
export function buildContext(declared: Iterable<string>, values: ReadonlyMap<string, SecretValue>): TemplateContext {
  const secrets = Object.create(null) as Record<string, unknown>;
  const raw = Object.create(null) as Record<string, string>;
  const meta = Object.create(null) as Record<string, SecretMetaView>;
  const views = new Map<string, SecretView>();
  for (const name of declared) {
    const value = values.get(name);
    if (!value) continue;
    const view = viewOf(value);
    secrets[name] = view.value;
    raw[name] = view.raw;
    meta[name] = view.meta;
    views.set(name, view);
  }
  return { secrets: Object.freeze(secrets), raw: Object.freeze(raw), meta: Object.freeze(meta), views };
}

/**
 * The scope one file is rendered with: the shared maps, plus `secret`,
 * `raw_secret` and `meta_secret` when the file names a `secret` that has a value.
 */
export function fileScope(context: TemplateContext, secretName: string | undefined): Record<string, unknown> {
  const scope: Record<string, unknown> = { secrets: context.secrets, raw: context.raw, meta: context.meta };
  const view = secretName === undefined ? undefined : context.views.get(secretName);
  if (view) {
    scope.secret = view.value;
    scope.raw_secret = view.raw;
    scope.meta_secret = view.meta;
  }
  return scope;
}
