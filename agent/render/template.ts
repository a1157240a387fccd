// The template engine: LiquidJS, strict, with no file system and the filters
// that secret files need. Every filter error is a FilterError whose message
// names the filter and what was wrong, never the input: the input is a secret.
import { createHash } from 'node:crypto';
import { Drop, Liquid } from 'liquidjs';
import { TEMPLATE_TIME_LIMIT_MS } from './limits.ts';

/**
 * A filter refused its input. The message says why without quoting the input;
 * the renderer passes it through to the user as it is.
 */
export class FilterError extends Error {
  override readonly name = 'FilterError';
}

/**
 * The filters we add to Liquid's own (ours win on a name clash:
 * `json`, `base64_encode` and `base64_decode` replace Liquid's versions).
 *
 * - `json`: JSON.stringify (optional indent: `json: 2`).
 * - `base64_encode`: UTF-8 bytes of the text, base64.
 * - `base64_decode`: strict base64 (RFC 4648 alphabet, padding required, no
 *   whitespace) to a UTF-8 string; bad base64 or bytes that are not UTF-8 fail.
 * - `dotenv`: a double-quoted value for .env files (see {@link dotenvQuote}).
 * - `shell`: POSIX single quotes: `it's` -> `'it'\''s'`.
 * - `sha256`: hex digest of the UTF-8 bytes.
 *
 * Helpers used by the ready-made templates (templates/*.liquid), usable by anyone:
 * - `entries`: a JSON object as `[key, value]` pairs; fails on anything else.
 * - `env_entries`: the same, failing on a key that is not a valid environment
 *   variable name (the error names the key).
 * - `env_name`: passes a valid environment variable name through, fails
 *   otherwise (the error does not show the input: it may be a value).
 * - `properties_key`, `properties_value`: java.util.Properties escaping.
 * - `pgpass`: one escaped field of a PostgreSQL password file.
 * - `mycnf`: a double-quoted value for MySQL/MariaDB option files.
 *
 * Every filter takes text; a number or boolean becomes its JSON text, nil the
 * empty string, an object or array its JSON.
 */
export const FILTERS: Readonly<Record<string, (value: unknown, ...args: unknown[]) => unknown>> = {
  json: (value, indent) => JSON.stringify((value instanceof Drop ? value.valueOf() : value) ?? null, exactIntegers, typeof indent === 'number' ? indent : undefined),
  base64_encode: (value) => Buffer.from(text(value), 'utf8').toString('base64'),
  base64_decode: (value) => base64Decode(text(value)),
  dotenv: (value) => dotenvQuote(text(value)),
  shell: (value) => shellQuote(text(value)),
  sha256: (value) => createHash('sha256').update(text(value), 'utf8').digest('hex'),
  entries: (value) => entries('entries', value),
  env_entries: (value) => {
    const pairs = entries('env_entries', value);
    for (const [key] of pairs) {
      // Keys of a JSON secret are structure, not values: naming one helps, and
      // only keys reach this message. Still, a long or odd key is not shown.
      if (!ENV_NAME.test(key)) throw new FilterError(`env_entries: ${describeKey(key)} is not a valid environment variable name (${ENV_NAME_RULE})`);
    }
    return pairs;
  },
  env_name: (value) => {
    // The input may be anything, a secret value included: never show it.
    if (!ENV_NAME.test(text(value))) throw new FilterError(`env_name: the value is not a valid environment variable name (${ENV_NAME_RULE})`);
    return text(value);
  },
  properties_key: (value) => propertiesEscape(text(value), true),
  properties_value: (value) => propertiesEscape(text(value), false),
  pgpass: (value) => pgpassField(text(value)),
  mycnf: (value) => mycnfQuote(text(value)),
};

/** Liquid's memoryLimit (see createTemplateEngine). */
export const TEMPLATE_MEMORY_UNITS = 4_000_000;
/** The most characters one template file may write (docs/templates.md, "Limits"): 8 Mi. */
export const TEMPLATE_OUTPUT_LIMIT = 8 * 1024 * 1024;

/**
 * Liquid's output buffer, stopping at TEMPLATE_OUTPUT_LIMIT characters: the
 * output is the one thing Liquid's memoryLimit does not count, and a string of
 * hundreds of MB made in one allocation would pass any heap check in one step.
 */
export class CappedEmitter {
  buffer = '';
  write(html: unknown): void {
    const s = typeof html === 'string' ? html : text(html);
    if (this.buffer.length + s.length > TEMPLATE_OUTPUT_LIMIT) {
      throw new FilterError(`output: the file would be longer than ${TEMPLATE_OUTPUT_LIMIT / 1024 / 1024} Mi characters, the limit for one template file`);
    }
    this.buffer += s;
  }
}

/**
 * A fresh engine. Options and why:
 * - strictVariables / strictFilters: a typo is an error, not an empty string.
 * - lenientIf: `{% if secret.chain %}` and `| default:` may test an optional
 *   field; everywhere else an undefined variable is still an error.
 * - ownPropertyOnly: `secrets.db.constructor` is not a way into prototypes.
 * - templates: {} and no include/render/layout tags: a template cannot read files.
 * - outputEscape is not HTML escaping: it writes objects and arrays as JSON
 *   instead of "[object Object]", and nil as nothing.
 * - renderLimit, memoryLimit: a runaway loop or a `(1..1000000000)` range fails
 *   one file with Liquid's own error. memoryLimit counts range elements and the
 *   characters of Liquid's string filters over one render: 4 million keeps the
 *   largest array or string it lets through (32 MB) well inside the render
 *   worker's heap (sandbox.ts), whose time and heap bounds hold whatever the
 *   template does; these only fail sooner and say why.
 * - locale: fixed, so `| date` output does not depend on the container's
 *   environment; left unset, Liquid asks Intl.DateTimeFormat for the default
 *   locale, which pages ICU data into every agent (+6.4 MB file-backed, 8.2 MB
 *   RSS in all: `npm run bench -- --only=probes`).
 */
export function createTemplateEngine(): Liquid {
  const engine = new Liquid({
    strictVariables: true,
    strictFilters: true,
    lenientIf: true,
    ownPropertyOnly: true,
    templates: {},
    relativeReference: false,
    dynamicPartials: false,
    outputEscape: text,
    renderLimit: TEMPLATE_TIME_LIMIT_MS,
    memoryLimit: TEMPLATE_MEMORY_UNITS,
    locale: 'en-US',
  });
  for (const tag of ['include', 'render', 'layout', 'block']) {
    // The tag table is a plain record; removing a tag makes using it a parse error.
    delete engine.tags[tag];
  }
  for (const name of MATH_FILTERS) {
    const math = engine.filters[name];
    if (!math) continue;
    engine.registerFilter(name, function (this: unknown, ...args: unknown[]) {
      if (args.some((a) => typeof a === 'bigint')) {
        throw new FilterError(`${name}: an integer beyond 2^53 cannot be computed with exactly here; write it as it is ({{ value }}, | json) or store it as a string`);
      }
      return (math as (...a: unknown[]) => unknown).apply(this, args);
    });
  }
  // Liquid's jsonify is its json: ours too (exact integers).
  for (const [name, filter] of [...Object.entries(FILTERS), ['jsonify', FILTERS.json!] as const]) {
    // Charged to Liquid's memoryLimit like Liquid's own string filters (input,
    // then output): base64_encode in a loop must not grow a string (and its
    // off-heap Buffer, which no heap limit sees) without bound.
    engine.registerFilter(name, function (this: { context: { memoryLimit: { use(n: number): void } } }, value: unknown, ...args: unknown[]) {
      const limit = this.context.memoryLimit;
      limit.use(sizeOf(value));
      const out = filter(value, ...args);
      limit.use(sizeOf(out));
      return out;
    });
  }
  return engine;
}

/** JSON.stringify's replacer: an integer beyond 2^53 (a BigInt, context.ts) as a JSON number with its exact digits. */
function exactIntegers(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON(value.toString()) : value;
}

/** Liquid's math filters, which would turn a BigInt into the nearest double without a word. */
const MATH_FILTERS = ['abs', 'at_least', 'at_most', 'ceil', 'divided_by', 'floor', 'minus', 'modulo', 'plus', 'round', 'times'];

/** What a filter's input or output is charged to memoryLimit: characters of a string, elements of an array. */
function sizeOf(value: unknown): number {
  if (typeof value === 'string' || Array.isArray(value)) return value.length;
  return 1;
}

/** How a filter (and the output) sees its input. */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  // Liquid's own literals (nil, empty, blank) arrive as Drops.
  if (value instanceof Drop) return text(value.valueOf());
  if (value === null || value === undefined) return '';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  // Objects and arrays as JSON; what JSON cannot hold (functions, symbols) as nothing.
  const json: string | undefined = JSON.stringify(value, exactIntegers);
  return json ?? '';
}

export function isJsonObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object that is not JSON';
  return `a ${typeof value}`;
}

function rejectNul(filter: string, s: string): void {
  if (s.includes('\0')) throw new FilterError(`${filter}: the value contains a NUL character, which this format cannot hold`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function base64Decode(s: string): string {
  if (!BASE64.test(s)) throw new FilterError('base64_decode: the input is not valid base64 (A-Z a-z 0-9 + /, padded with =)');
  try {
    return utf8.decode(Buffer.from(s, 'base64'));
  } catch (err) {
    // TextDecoder's message does not quote the bytes, but say it our way.
    throw new FilterError('base64_decode: the decoded bytes are not UTF-8 text', { cause: err });
  }
}

/**
 * A double-quoted .env value that `set -a; . ./file` (bash, dash, busybox sh)
 * reads back exactly: `\`, `"`, `$` and `` ` `` are backslash-escaped.
 * Newlines and carriage returns stay literal inside the quotes: POSIX shells
 * have no escape for them in double quotes (`\` + newline is a line
 * continuation and vanishes). python-dotenv, docker compose and Node's
 * dotenv >= 15 accept multi-line double-quoted values; Node's dotenv does not
 * undo `\\`, `\"` or `\$` and turns CR into LF, so values with those
 * characters differ there. NUL cannot be in an environment variable: error.
 */
export function dotenvQuote(s: string): string {
  rejectNul('dotenv', s);
  return `"${s.replace(/[\\"$`]/g, '\\$&')}"`;
}

/** POSIX single quotes; a `'` becomes `'\''`. NUL cannot be in a shell word: error. */
export function shellQuote(s: string): string {
  rejectNul('shell', s);
  return `'${s.replaceAll("'", "'\\''")}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_NAME_RULE = 'letters, digits and _, not starting with a digit';

function entries(filter: string, value: unknown): [string, unknown][] {
  if (!isJsonObject(value)) throw new FilterError(`${filter}: expected a JSON object, got ${kindOf(value)}`);
  return Object.entries(value);
}

function describeKey(key: string): string {
  return key.length <= 64 && /^[\x20-\x7e]*$/.test(key) ? `key ${JSON.stringify(key)}` : `a key of ${key.length} characters`;
}

/**
 * java.util.Properties escaping, as Properties.store writes it (saveConvert):
 * `\` and `= : # !` backslash-escaped, tab/newline/CR/form feed as \t \n \r \f,
 * every other char outside 0x20..0x7e as \uXXXX (UTF-16 units, so the file is
 * ASCII and reads the same as ISO-8859-1 or UTF-8). Spaces: every one in a
 * key, only a leading one in a value.
 */
export function propertiesEscape(s: string, isKey: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (c > 61 && c < 127) {
      out += ch === '\\' ? '\\\\' : ch;
      continue;
    }
    switch (ch) {
      case ' ':
        out += i === 0 || isKey ? '\\ ' : ' ';
        break;
      case '\t': out += '\\t'; break;
      case '\n': out += '\\n'; break;
      case '\r': out += '\\r'; break;
      case '\f': out += '\\f'; break;
      case '=':
      case ':':
      case '#':
      case '!':
        out += `\\${ch}`;
        break;
      default:
        out += c < 0x20 || c > 0x7e ? `\\u${c.toString(16).toUpperCase().padStart(4, '0')}` : ch;
    }
  }
  return out;
}

/**
 * One field of a ~/.pgpass line: libpq reads `\x` as x in every field, so
 * `\` and `:` are escaped, a leading `#` too (a comment line) and a lone `*`
 * (the wildcard). A line cannot hold CR or LF: error.
 */
export function pgpassField(s: string): string {
  if (/[\r\n]/.test(s)) throw new FilterError('pgpass: the value contains a line break, which a password file cannot hold');
  rejectNul('pgpass', s);
  if (s === '*') return '\\*';
  const escaped = s.replace(/[\\:]/g, '\\$&');
  return escaped.startsWith('#') ? `\\${escaped}` : escaped;
}

/**
 * A double-quoted value for a MySQL/MariaDB option file (my.cnf): the client
 * library strips one pair of surrounding quotes, then reads \\ \" \n \r \t \b;
 * `#` inside quotes is not a comment. NUL cannot be held: error.
 */
export function mycnfQuote(s: string): string {
  rejectNul('mycnf', s);
  const escaped = s.replace(/[\\"\n\r\t\b]/g, (ch) => {
    switch (ch) {
      case '\n': return '\\n';
      case '\r': return '\\r';
      case '\t': return '\\t';
      case '\b': return '\\b';
      default: return `\\${ch}`;
    }
  });
  return `"${escaped}"`;
}
