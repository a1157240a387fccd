// Reading the configuration file: YAML or JSON (the `yaml` package parses
// both), validated against the schema and the cross-key rules, turned into an
// AgentConfig (defaults applied, durations in ms, paths absolute). Every
// problem found becomes one ConfigIssue with the file, line and key path; the
// caller gets all of them at once in one ConfigError.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import * as z from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.ts';
import type { AgentConfig, FileSpec, NotifyTarget, SecretSpec, SourceConfig } from '../types.ts';
import { parseDuration } from './duration.ts';
import { formatKeyPath, parseKeyPath, type KeySegment } from './keypath.ts';
import { SourceLines } from './locate.ts';
import { didYouMean, show } from './messages.ts';
import { crossCheck } from './rules.ts';
import { REFRESH_NEVER } from './fields.ts';
import { configShape, type ConfigOutput } from './schema.ts';
import { modeNumberMessage, normalizeSignal } from './values.ts';

/**
 * Reads and validates the configuration file at `file` (YAML or JSON).
 * Relative paths inside it (source.path, outputDir, templateFile, pidFile)
 * are resolved against the file's directory.
 * @throws ConfigError with every problem found, including a missing or unreadable file.
 */
export async function loadConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, path: '', message: readFailure(err) }], { cause: err });
  }
  return parseConfig(text, file, path.dirname(path.resolve(file)));
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'file not found (set --config or SECRETS_AGENT_CONFIG to the configuration file)';
    case 'EACCES':
    case 'EPERM':
      return 'cannot read the file: permission denied';
    case 'EISDIR':
      return 'is a directory; expected a YAML or JSON file';
    default:
      return `cannot read the file (${code ?? 'unknown error'})`;
  }
}

/**
 * Validates configuration text. `file` is how the file is named in messages
 * (as the user gave it; a name starting with "<", like "<embedded>", gives an
 * empty configPath); `baseDir` is the directory relative paths are resolved
 * against.
 * @throws ConfigError with every problem found.
 */
export function parseConfig(text: string, file: string, baseDir: string): AgentConfig {
  const issue = (line: number | undefined, keyPath: readonly KeySegment[], message: string): ConfigIssue =>
    line === undefined ? { file, path: formatKeyPath(keyPath), message } : { file, line, path: formatKeyPath(keyPath), message };

  const { doc, lines, raw, issues: syntaxIssues } = readDocument(text);
  // One mistake can derail the parser for the rest of the file: the first few errors are the useful ones.
  if (syntaxIssues.length > 0) throw new ConfigError(sortIssues(syntaxIssues.map((i) => issue(i.line, [], i.message))).slice(0, 10));
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    const message =
      raw === null || raw === undefined
        ? 'the file is empty; expected a mapping with at least outputDir and files'
        : `expected a mapping of keys (outputDir, files, ...), not ${show(raw)}`;
    throw new ConfigError([issue(lines.nearestLine([]), [], message)]);
  }

  const issues: ConfigIssue[] = [];
  const parsed = configShape.safeParse(raw, { error: defaultMessage });
  if (!parsed.success) {
    for (const zi of parsed.error.issues) {
      const at = zi.path.filter((s): s is KeySegment => typeof s === 'string' || typeof s === 'number');
      if (zi.code === 'unrecognized_keys') {
        const valid = keysAt(at);
        for (const key of zi.keys) {
          const hint = didYouMean(key, valid);
          const message = hint ? `unknown key${hint}` : `unknown key (valid keys: ${valid.join(', ')})`;
          issues.push(issue(lines.nearestLine([...at, key], 'key'), [...at, key], message));
        }
      } else if (zi.code === 'invalid_key') {
        issues.push(issue(lines.nearestLine(at, 'key'), at, zi.issues[0]?.message ?? 'is not a valid key'));
      } else {
        issues.push(issue(lines.nearestLine(at), at, refineMessage(at, zi.message, raw, text, doc)));
      }
    }
  }
  for (const ri of crossCheck(raw, baseDir)) issues.push(issue(lines.nearestLine(ri.path), ri.path, ri.message));

  if (issues.length > 0 || !parsed.success) throw new ConfigError(sortIssues(issues));
  return toAgentConfig(parsed.data, file, baseDir, lines);
}

interface ReadResult {
  readonly doc: Document;
  readonly lines: SourceLines;
  readonly raw: unknown;
  readonly issues: readonly { readonly line?: number; readonly message: string }[];
}

function readDocument(text: string): ReadResult {
  const lineCounter = new LineCounter();
  // merge: `<<: *defaults` is common in hand-written YAML. logLevel: keep the
  // parser's warnings (e.g. stringified collection keys) off stderr.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true, logLevel: 'error' });
  const lines = new SourceLines(doc, lineCounter);
  // An error at the very end (an unclosed "[") is reported on the last line that has text.
  const lastLine = text.trimEnd().split('\n').length;
  const issues = doc.errors
    .map((err) => ({
      line: Math.min(lineCounter.linePos(err.pos[0]).line, lastLine),
      message: syntaxMessage(err.code, err.message, text.slice(err.pos[0])),
    }));
  if (issues.length > 0) return { doc, lines, raw: undefined, issues };
  try {
    return { doc, lines, raw: doc.toJS({ maxAliasCount: 100 }), issues };
  } catch (err) {
    // toJS refuses alias bombs ("Excessive alias count") and alias cycles.
    const why = err instanceof Error ? firstLine(err.message) : 'invalid document';
    return { doc, lines, raw: undefined, issues: [{ line: 1, message: `cannot read the document: ${why}` }] };
  }
}

/** `rest`: the source from the error's position on. */
function syntaxMessage(code: string, message: string, rest: string): string {
  if (code === 'DUPLICATE_KEY') {
    const key = /^(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^:\n]*)/.exec(rest)?.[0].trim() ?? '';
    const quoted = /^["']/.test(key) && key.length <= 60;
    return key ? `duplicate key ${quoted ? key : show(key)}: each key may appear only once` : 'duplicate key: each key may appear only once';
  }
  if (code === 'TAB_AS_INDENT') return 'YAML syntax error: tabs are not allowed for indentation; use spaces';
  if (code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document ("---"); keep one';
  // The parser reports its own stack overflow on absurdly nested input.
  if (/call stack|stack overflow/i.test(message)) return 'the document is nested too deeply';
  return `YAML syntax error: ${firstLine(message).replace(/\.$/, '')}`;
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0] ?? '';
}

/** Messages for issues the schema has no specific message for. */
function defaultMessage(iss: z.core.$ZodRawIssue): string {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'required key is missing';
      if (iss.input === null) return 'has no value; give it one or remove the key';
      return `must be ${iss.expected}, not ${show(iss.input)}`;
    case 'invalid_value':
      return `${show(iss.input)} is not one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return `must be at least ${String(iss.minimum)}`;
    case 'too_big':
      return `must be at most ${String(iss.maximum)}`;
    default:
      return 'is not valid';
  }
}

/** A number where a mode string belongs: say how to quote it, as the user wrote it. */
function refineMessage(at: readonly KeySegment[], message: string, raw: unknown, text: string, doc: Document): string {
  if (at.length === 3 && at[0] === 'files' && at[2] === 'mode' && typeof valueAt(raw, at) === 'number') {
    const node = doc.getIn(at, true) as { range?: [number, number, number] } | undefined;
    const source = node?.range ? text.slice(node.range[0], node.range[1]).trim() : undefined;
    if (source) return modeNumberMessage(source);
  }
  return message;
}

function valueAt(raw: unknown, at: readonly KeySegment[]): unknown {
  let v = raw;
  for (const seg of at) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
  return v;
}

/** The valid keys of the object at `at` in the schema, for "did you mean". */
function keysAt(at: readonly KeySegment[]): string[] {
  let schema: unknown = configShape;
  const unwrap = (s: unknown): unknown => {
    while (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault) s = s.unwrap();
    return s;
  };
  for (const seg of at) {
    schema = unwrap(schema);
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, unknown>)[String(seg)];
    else if (schema instanceof z.ZodArray) schema = schema.element;
    else if (schema instanceof z.ZodRecord) schema = schema.valueType;
    else return [];
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape).filter((k) => k !== '$schema') : [];
}

/** Without repeats, by line (stable). */
function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const k = `${i.line}\0${i.path}\0${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return unique
    .map((issue, order) => ({ issue, order }))
    .sort((a, b) => (a.issue.line ?? Infinity) - (b.issue.line ?? Infinity) || a.order - b.order)
    .map((x) => x.issue);
}

// --- the AgentConfig ----------------------------------------------------------

function ms(duration: string): number {
  // The schema has checked every duration already.
  return parseDuration(duration) ?? 0;
}

function toAgentConfig(c: ConfigOutput, file: string, baseDir: string, lines: SourceLines): AgentConfig {
  const resolve = (p: string): string => path.resolve(baseDir, p);
  return {
    configPath: file.startsWith('<') ? '' : path.resolve(file),
    source: toSource(c.source, resolve),
    outputDir: resolve(c.outputDir),
    layout: c.layout,
    ...(c.targets === undefined ? {} : { targets: c.targets }),
    refresh: { intervalMs: ms(c.refresh.interval), jitter: c.refresh.jitter, rotationAware: c.refresh.rotationAware, ...(c.refresh.batchChecks ? { batchChecks: true } : {}) },
    secrets: Object.entries(c.secrets).map(([name, s]) => toSecret(name, s)),
    files: c.files.map((f) => toFile(f, resolve)),
    notify: toNotify(c.notify, resolve),
    server: { listen: c.server.listen },
    // Block scalars (`template: |`) answer the line after the header: see SourceLines.valueLine.
    lineOf: (keyPath: string): number | undefined => {
      const segments = parseKeyPath(keyPath);
      return segments === undefined ? undefined : lines.valueLine(segments);
    },
  };
}

/** The rules have checked that exactly one of id, parameter and parameterPath is set, with only its own keys. */
function toSecret(name: string, s: ConfigOutput['secrets'][string]): SecretSpec {
  const interval = refreshOf(s.refreshInterval);
  if (s.parameter !== undefined) {
    return {
      name,
      kind: 'parameter',
      id: s.parameter,
      // A pinned parameter version is a pinned version like a secret's versionId: never refreshed.
      ...(s.version !== undefined ? { versionId: String(s.version) } : s.label !== undefined ? { label: s.label } : {}),
      ...interval,
    };
  }
  if (s.parameterPath !== undefined) return { name, kind: 'parameterPath', id: s.parameterPath, ...interval };
  return {
    name,
    id: s.id ?? '',
    ...(s.versionId === undefined ? { versionStage: s.versionStage ?? 'AWSCURRENT' } : { versionId: s.versionId }),
    ...interval,
  };
}

// --- refreshInterval: never (fetch once) ---
function refreshOf(interval: string | undefined): Pick<SecretSpec, 'refreshIntervalMs' | 'fetchOnce'> {
  if (interval === undefined) return {};
  return interval === REFRESH_NEVER ? { fetchOnce: true } : { refreshIntervalMs: ms(interval) };
}
// --- end refreshInterval: never ---

function toSource(s: ConfigOutput['source'], resolve: (p: string) => string): SourceConfig {
  if (s?.type === 'file') return { type: 'file', path: resolve(s.path ?? '') };
  return {
    type: 'aws',
    ...(s?.region === undefined ? {} : { region: s.region }),
    ...(s?.failoverRegion === undefined ? {} : { failoverRegion: s.failoverRegion }),
    ...(s?.assumeRoleArn === undefined ? {} : { assumeRoleArn: s.assumeRoleArn }),
    ...(s?.allowNodeRole === true ? { allowNodeRole: true } : {}),
  };
}

function toFile(f: ConfigOutput['files'][number], resolve: (p: string) => string): FileSpec {
  const base = {
    path: f.path ?? f.dir ?? '',
    mode: Number.parseInt(f.mode, 8),
    ...(f.uid === undefined ? {} : { uid: f.uid }),
    ...(f.gid === undefined ? {} : { gid: f.gid }),
  };
  if (f.envFile !== undefined) return { ...base, kind: 'envFile', dir: f.envFile, syntax: f.envSyntax ?? 'quoted' };
  const secret = f.secret === undefined ? {} : { secret: f.secret };
  if (f.template !== undefined) return { ...base, kind: 'template', template: f.template, ...secret };
  if (f.templateFile !== undefined) return { ...base, kind: 'templateFile', templateFile: resolve(f.templateFile), ...secret };
  const key = f.key === undefined ? {} : { key: f.key };
  const decode = f.decode === undefined ? {} : { decode: f.decode };
  if (f.eachKey === true) return { ...base, kind: 'eachKey', secret: f.secret ?? '', ...key, ...decode };
  return { ...base, kind: 'secret', secret: f.secret ?? '', ...key, ...decode };
}

function toNotify(list: ConfigOutput['notify'], resolve: (p: string) => string): NotifyTarget[] {
  const taken = new Set(list.flatMap((n) => (n.name === undefined ? [] : [n.name])));
  return list.map((n): NotifyTarget => {
    let name = n.name;
    if (name === undefined) {
      const derived = derivedName(n);
      name = derived;
      for (let k = 2; taken.has(name); k++) name = `${derived}#${k}`;
      taken.add(name);
    }
    const common = { name, splayMs: ms(n.splay), ...(n.files === undefined ? {} : { files: n.files }) };
    if (n.exec !== undefined) return { ...common, kind: 'exec', argv: n.exec, timeoutMs: ms(n.timeout ?? '30s') };
    if (n.http !== undefined) return { ...common, kind: 'http', url: n.http, timeoutMs: ms(n.timeout ?? '10s') };
    return {
      ...common,
      kind: 'signal',
      // The schema has checked that the signal exists.
      signal: normalizeSignal(n.signal ?? '') ?? 'SIGHUP',
      ...(n.process === undefined ? {} : { process: n.process }),
      ...(n.pidFile === undefined ? {} : { pidFile: resolve(n.pidFile) }),
    };
  });
}

/** `signal:<process or pidFile>`, `exec:<basename of argv[0]>`, `http:<host><path>` (never the query: it may hold a token). */
function derivedName(n: ConfigOutput['notify'][number]): string {
  if (n.exec !== undefined) return `exec:${path.basename(n.exec[0] ?? '')}`;
  if (n.http !== undefined) {
    const url = new URL(n.http);
    return `http:${url.host}${url.pathname}`;
  }
  return `signal:${n.process ?? n.pidFile ?? ''}`;
}
