// The bytes of `secret:` and `eachKey:` files, by External Secrets Operator's
// rules, so a file holds exactly what ESO would put in the Kubernetes Secret:
//
// - `key` (ESO's `property`): the literal top-level key first; when there is
//   none and the key has a ".", the dotted path (`a.b.c`, a number indexes an
//   array, `\.` is a literal dot), as ESO's escapeDotsIfRequired then
//   gjson.Get (providers/v1/aws/secretsmanager/secretsmanager.go:509-521, 487-492).
//   The value found is written as gjson's Result.String(): a string unquoted,
//   an object or array as its JSON text exactly as stored, true/false, null as
//   nothing, an integer as written, any other number in Go's shortest
//   non-exponent form (strconv.FormatFloat(n, 'f', -1, 64)).
// - eachKey (ESO's dataFrom.extract, GetSecretMap, secretsmanager.go:524-546):
//   every top-level key; a string value unquoted (null: nothing), any other
//   value as its JSON text exactly as stored. A repeated key: the last one
//   (Go's encoding/json), whereas `key` finds the first (gjson).
// - decode (ESO's decodingStrategy, runtime/decoding/decoding.go:41-73),
//   applied to the bytes found.
// - SecretBinary: written byte for byte; with `key` or eachKey its bytes are
//   read as the JSON text (ESO's retrievePayload, secretsmanager.go:494-507).
//
// Values are parsed here with their positions kept (the JSON text of a nested
// value is the stored text, not a re-serialization). Nothing here ever puts a
// value in a message: errors name keys and say what is wrong.
import type { Decoding } from '../types.ts';
import { MAX_JSON_DEPTH } from './context.ts';

/** A JSON value with its span in the text. */
export type JsonNode =
  | { readonly type: 'object'; readonly start: number; readonly end: number; readonly entries: readonly (readonly [string, JsonNode])[] }
  | { readonly type: 'array'; readonly start: number; readonly end: number; readonly items: readonly JsonNode[] }
  | { readonly type: 'string'; readonly start: number; readonly end: number; readonly value: string }
  | { readonly type: 'number' | 'true' | 'false' | 'null'; readonly start: number; readonly end: number };

/** Parses `text` as one JSON value; undefined when it is not valid JSON or nested deeper than MAX_JSON_DEPTH. */
export function parseJson(text: string): JsonNode | undefined {
  // JSON.parse validates (and is fast); the scanner below then trusts the text.
  try {
    JSON.parse(text);
  } catch {
    // Deliberately dropped: V8's SyntaxError quotes the input, which is the secret.
    return undefined;
  }
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): JsonNode | undefined => {
    if (depth > MAX_JSON_DEPTH) return undefined;
    ws();
    const start = i;
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: [string, JsonNode][] = [];
      ws();
      if (text[i] === '}') {
        i++;
        return { type: 'object', start, end: i, entries };
      }
      for (;;) {
        ws();
        const k = str();
        ws();
        i++; // ':'
        const v = value(depth + 1);
        if (v === undefined) return undefined;
        entries.push([k, v]);
        ws();
        if (text[i++] === '}') return { type: 'object', start, end: i, entries };
      }
    }
    if (c === '[') {
      i++;
      const items: JsonNode[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return { type: 'array', start, end: i, items };
      }
      for (;;) {
        const v = value(depth + 1);
        if (v === undefined) return undefined;
        items.push(v);
        ws();
        if (text[i++] === ']') return { type: 'array', start, end: i, items };
      }
    }
    if (c === '"') {
      const v = str();
      return { type: 'string', start, end: i, value: v };
    }
    for (const word of ['true', 'false', 'null'] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return { type: word, start, end: i };
      }
    }
    while (i < text.length && /[-+.eE0-9]/.test(text[i]!)) i++;
    return { type: 'number', start, end: i };
  };
  return value(0);
}

/** The path segments of a dotted key: "." separates, "\" escapes the next character. */
export function keySegments(key: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    const c = key[i]!;
    if (c === '\\' && i + 1 < key.length) cur += key[++i];
    else if (c === '.') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function child(node: JsonNode, segment: string): JsonNode | undefined {
  if (node.type === 'object') return node.entries.find(([k]) => k === segment)?.[1];
  if (node.type === 'array' && /^(?:0|[1-9]\d*)$/.test(segment)) return node.items[Number(segment)];
  return undefined;
}

/**
 * The value at `key`: the literal top-level key first, then (when the key has
 * a "." and there is no such literal key) the dotted path. Undefined: not found.
 */
export function lookup(root: JsonNode, key: string): JsonNode | undefined {
  const literal = child(root, key);
  if (literal !== undefined || !key.includes('.')) return literal;
  let node: JsonNode | undefined = root;
  for (const seg of keySegments(key)) {
    node = node === undefined ? undefined : child(node, seg);
  }
  return node;
}

/** gjson's Result.String() of a node (see the header). */
export function gjsonString(text: string, node: JsonNode): string {
  switch (node.type) {
    case 'string':
      return node.value;
    case 'null':
      return '';
    case 'true':
    case 'false':
      return node.type;
    case 'number': {
      const raw = text.slice(node.start, node.end);
      return /^-?\d+$/.test(raw) ? raw : goFloat(Number(raw));
    }
    default:
      return text.slice(node.start, node.end);
  }
}

/** The value of one key of an extracted map (Go's json.Unmarshal into a string, else the raw text). */
export function extractString(text: string, node: JsonNode): string {
  if (node.type === 'string') return node.value;
  if (node.type === 'null') return '';
  return text.slice(node.start, node.end);
}

/** strconv.FormatFloat(n, 'f', -1, 64): the shortest digits that round-trip, never an exponent. */
export function goFloat(n: number): string {
  if (!Number.isFinite(n)) return n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN';
  const s = String(n);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, lead, frac = '', exp] = m;
  const digits = `${lead}${frac}`;
  const point = 1 + Number(exp);
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

// --- decoding ------------------------------------------------------------------

const STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const URL_SAFE = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

/**
 * Go's base64.StdEncoding / URLEncoding DecodeString: padded, CR and LF
 * ignored, nothing after the padding. Undefined when `bytes` is not that.
 */
function strictBase64(bytes: Buffer, alphabet: 'base64' | 'base64url'): Buffer | undefined {
  const text = bytes.toString('latin1').replace(/[\r\n]/g, '');
  if (!(alphabet === 'base64' ? STD : URL_SAFE).test(text)) return undefined;
  return Buffer.from(text, alphabet);
}

/** The bytes after `decoding`; a string saying what is wrong when they cannot be decoded. */
export function decodeBytes(bytes: Buffer, decoding: Decoding | undefined): Buffer | string {
  switch (decoding ?? 'none') {
    case 'none':
      return bytes;
    case 'base64':
      return strictBase64(bytes, 'base64') ?? 'is not valid base64 (standard alphabet, with "=" padding) and decode is base64';
    case 'base64url':
      return strictBase64(bytes, 'base64url') ?? 'is not valid base64url (URL alphabet, with "=" padding) and decode is base64url';
    default:
      return strictBase64(bytes, 'base64') ?? strictBase64(bytes, 'base64url') ?? bytes;
  }
}
