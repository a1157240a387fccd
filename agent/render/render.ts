// Templates in, bytes out. compileFiles parses every template once and checks
// it statically (used by `validate` and at startup); renderFiles turns one set
// of secret values into one RenderedFile per configured file. One bad file
// never stops the others, and no message ever carries a secret value: errors
// name files, lines, variables, secrets and keys.
//
// An `envFile` entry is rendered last, from the files just rendered in its
// directory (envfile.ts: the kubelet's syntax, and what it cannot carry).
//
// An `eachKey` entry renders to one file per key of its secret (value.ts has
// the rules for what each file holds); assembleFiles() puts the entries
// together: an explicit file wins over a key of the same path, and between
// two eachKey entries the later wins (ESO: data over dataFrom, later dataFrom
// over earlier).
import { readFile } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { LiquidError, type Template } from 'liquidjs';
import { ConfigError, RenderError, type ConfigIssue } from '../errors.ts';
import type { AgentConfig, Decoding, FileSpec, RenderedFile, SecretValue } from '../types.ts';
import { buildContext, fileScope, MAX_JSON_DEPTH, viewOf, type SecretView, type TemplateContext } from './context.ts';
import { createTemplateEngine, FilterError, isJsonObject } from './template.ts';
import { decodeBytes, extractString, gjsonString, lookup, parseJson, type JsonNode } from './value.ts';
import { unsafePathReason } from '../config/values.ts';
import { envKeyProblem, envTemplateProblem, envValueProblem, formatEnvFile } from './envfile.ts';

// Created on first use: a config whose files are all raw secrets never pays for
// the Liquid engine (~15 ms of every such init, measured by `npm run bench`).
let liquid: ReturnType<typeof createTemplateEngine> | undefined;
const engine = (): ReturnType<typeof createTemplateEngine> => (liquid ??= createTemplateEngine());

/** Where a template's text came from, to point messages at the right line. */
export type TemplateOrigin =
  /**
   * `template:` in the config file; `firstLine` is `config.lineOf('files[i].template')`,
   * taken as the config line of template line 1 (template line N is at
   * firstLine + N - 1), so for a `template: |` block the loader should answer
   * with the line after the key.
   */
  | { readonly kind: 'inline'; readonly configFile: string; readonly keyPath: string; readonly firstLine: number | undefined }
  | { readonly kind: 'file'; readonly path: string };

export interface CompiledFile {
  /** Position in `config.files`. */
  readonly index: number;
  readonly spec: FileSpec;
  /** Parsed template; undefined for `kind: 'secret'` files. */
  readonly template?: CompiledTemplate;
  /**
   * Local names of the secrets the file reads (static analysis). A template
   * that reads the maps as a whole (`secrets | json`) or by a computed name
   * (`secrets[name]`) reads every declared secret.
   */
  readonly secrets: ReadonlySet<string>;
}

export interface CompiledTemplate {
  readonly parsed: Template[];
  readonly origin: TemplateOrigin;
  /**
   * Every variable path written literally in the template, with its prefixes
   * (`secrets.db.password`, `secrets.db`, `secrets`). LiquidJS names an
   * undefined variable by its resolved path, and a computed lookup
   * (`secrets.db[key]`) resolves to a value: a name is shown only when it is
   * one of these, i.e. template text.
   */
  readonly literalPaths: ReadonlySet<string>;
  /** Variables with a computed segment, as written, by template line. */
  readonly computed: ReadonlyMap<number, readonly string[]>;
}

export interface CompiledFiles {
  /** In `config.files` order. */
  readonly files: readonly CompiledFile[];
}

export interface RenderOutcome {
  /** The files that rendered, put together by assembleFiles(). */
  files: RenderedFile[];
  /** What each entry of `config.files` that rendered gave, by its path (one file; an eachKey entry: one per key). */
  groups: Map<string, RenderedFile[]>;
  /** One per file that did not. */
  errors: RenderError[];
}

const CONTEXT_MAPS = new Set(['secrets', 'raw', 'meta']);
const FILE_SECRET_VARS = new Set(['secret', 'raw_secret', 'meta_secret']);

/**
 * Parses every template (inline or templateFile, each file read once) and
 * checks what can be checked without values: Liquid syntax, unknown filters,
 * unknown variables, and references to secrets that are not declared.
 * @throws ConfigError listing every problem, not only the first.
 */
export async function compileFiles(config: AgentConfig): Promise<CompiledFiles> {
  const configFile = config.configPath || '<embedded>';
  const declared = config.secrets.map((s) => s.name);
  const declaredSet = new Set(declared);
  const issues: ConfigIssue[] = [];

  const texts = new Map<string, Promise<string | NodeJS.ErrnoException>>();
  for (const spec of config.files) {
    if (spec.kind === 'templateFile' && !texts.has(spec.templateFile)) {
      texts.set(spec.templateFile, readFile(spec.templateFile, 'utf8').catch((err: NodeJS.ErrnoException) => err));
    }
  }

  const files: CompiledFile[] = [];
  for (const [index, spec] of config.files.entries()) {
    const at = (key: string): ConfigIssue => ({ file: configFile, line: config.lineOf(`files[${index}].${key}`), path: `files[${index}].${key}`, message: '' });

    if (spec.secret !== undefined && !declaredSet.has(spec.secret)) {
      issues.push({ ...at('secret'), message: `secret ${JSON.stringify(spec.secret)} is not declared under secrets:` });
    }
    if (spec.kind === 'secret' || spec.kind === 'eachKey') {
      files.push({ index, spec, secrets: new Set([spec.secret]) });
      continue;
    }
    if (spec.kind === 'envFile') {
      // Reads what the files in its directory read (filled in below, once all are compiled).
      files.push({ index, spec, secrets: new Set() });
      continue;
    }

    let source: string;
    let origin: TemplateOrigin;
    if (spec.kind === 'template') {
      source = spec.template;
      origin = { kind: 'inline', configFile, keyPath: `files[${index}].template`, firstLine: config.lineOf(`files[${index}].template`) };
    } else {
      const read = await texts.get(spec.templateFile)!;
      if (typeof read !== 'string') {
        issues.push({ ...at('templateFile'), message: `cannot read template file ${JSON.stringify(spec.templateFile)}: ${readProblem(read)}` });
        continue;
      }
      source = read;
      origin = { kind: 'file', path: spec.templateFile };
    }

    const problem = (row: number | undefined, message: string): void => {
      if (origin.kind === 'file') {
        issues.push({ file: origin.path, line: row, path: `files[${index}].templateFile`, message });
      } else {
        const line = row !== undefined && origin.firstLine !== undefined ? origin.firstLine + row - 1 : origin.firstLine;
        issues.push({ file: configFile, line, path: origin.keyPath, message: row === undefined ? message : `template line ${row}: ${message}` });
      }
    };

    let parsed: Template[];
    try {
      parsed = engine().parse(source);
    } catch (err) {
      const { row, message } = describeLiquidError(err, undefined);
      problem(row, message);
      continue;
    }

    const analysis = engine().analyzeSync(parsed);
    const literalPaths = new Set<string>();
    const computed = new Map<number, string[]>();
    for (const variables of Object.values(analysis.variables)) {
      for (const variable of variables) {
        const segments = variable.segments;
        if (segments.every((seg) => typeof seg !== 'object')) {
          for (let i = 1; i <= segments.length; i++) literalPaths.add(segments.slice(0, i).join('.'));
        } else {
          const row = variable.location.row;
          computed.set(row, [...(computed.get(row) ?? []), variable.toString()]);
        }
      }
    }

    const used = new Set<string>();
    let usesAll = false;
    const reported = new Set<string>();
    const report = (key: string, row: number, message: string): void => {
      if (reported.has(key)) return;
      reported.add(key);
      problem(row, message);
    };
    for (const [root, variables] of Object.entries(analysis.globals)) {
      for (const variable of variables) {
        const row = variable.location.row;
        if (CONTEXT_MAPS.has(root)) {
          const name = variable.segments[1];
          if (name === undefined || typeof name === 'object') {
            usesAll = true;
          } else if (declaredSet.has(String(name))) {
            used.add(String(name));
          } else {
            report(`${root}.${name}`, row, `${JSON.stringify(variable.toString())} uses secret ${JSON.stringify(String(name))}, which is not declared under secrets:`);
          }
        } else if (FILE_SECRET_VARS.has(root)) {
          if (spec.secret === undefined) {
            report(root, row, `${JSON.stringify(root)} is only defined when the file names a secret (add secret: <name> to files[${index}])`);
          } else {
            used.add(spec.secret);
          }
        } else {
          report(root, row, `undefined variable ${JSON.stringify(variable.toString())} (templates see secrets, raw and meta; and secret, raw_secret and meta_secret when the file names a secret)`);
        }
      }
    }
    files.push({ index, spec, template: { parsed, origin, literalPaths, computed }, secrets: usesAll ? new Set([...used, ...declared]) : used });
  }

  // An env file cannot carry what a template of its directory always writes.
  for (const env of config.files) {
    if (env.kind !== 'envFile') continue;
    for (const [i, f] of config.files.entries()) {
      if (f.kind !== 'template' && f.kind !== 'templateFile') continue;
      const slash = f.path.lastIndexOf('/');
      if ((slash < 0 ? '.' : f.path.slice(0, slash)) !== env.dir) continue;
      const text = f.kind === 'template' ? f.template : await texts.get(f.templateFile);
      const problem = typeof text === 'string' ? envTemplateProblem(text, env.syntax) : undefined;
      const key = f.path.slice(slash + 1);
      if (problem) issues.push({ file: configFile, line: config.lineOf(`files[${i}].${f.kind}`), path: `files[${i}].${f.kind}`, message: `key ${JSON.stringify(key)} of the env file ${JSON.stringify(env.path)} (${env.syntax} syntax) ${problem}; change the template, or leave this file out of ${JSON.stringify(env.dir)}` });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
  // An env file reads what the files of its directory read.
  for (const env of files) {
    if (env.spec.kind !== 'envFile') continue;
    const dir = env.spec.dir;
    const set = env.secrets as Set<string>;
    for (const f of files) {
      const parent = f.spec.kind === 'eachKey' ? f.spec.path : f.spec.path.includes('/') ? f.spec.path.slice(0, f.spec.path.lastIndexOf('/')) : '.';
      if (f !== env && f.spec.kind !== 'envFile' && parent === dir) for (const s of f.secrets) set.add(s);
    }
  }
  return { files };
}

/**
 * Renders every compiled file against one set of values (local name -> value).
 * Every file is attempted; a file that fails is left out of `files` and has
 * one RenderError in `errors`. Each secret version is parsed once, whatever
 * the number of files that read it.
 */
export async function renderFiles(config: AgentConfig, compiled: CompiledFiles, values: ReadonlyMap<string, SecretValue>): Promise<RenderOutcome> {
  const context = buildContext(
    config.secrets.map((s) => s.name),
    values,
  );
  const outcome: RenderOutcome = { files: [], groups: new Map(), errors: [] };
  const envFiles: CompiledFile[] = [];
  for (const [n, file] of compiled.files.entries()) {
    if (file.spec.kind === 'envFile') {
      envFiles.push(file);
      continue;
    }
    // Rendering is synchronous; let timers and the health server breathe.
    if (n > 0 && n % 100 === 0) await nextTurn();
    const { spec } = file;
    const out = (path: string, content: Buffer): RenderedFile => ({ path, content, mode: spec.mode, uid: spec.uid, gid: spec.gid });
    try {
      if (spec.kind === 'eachKey') {
        missingSecrets(file, context);
        const dir = spec.path === '.' ? '' : `${spec.path}/`;
        outcome.groups.set(spec.path, eachKeyFiles(spec.path, spec.secret, spec.key, spec.decode, values.get(spec.secret)!).map(([k, v]) => out(`${dir}${k}`, v)));
      } else {
        outcome.groups.set(spec.path, [out(spec.path, renderOne(file, context, values))]);
      }
    } catch (err) {
      outcome.errors.push(
        err instanceof RenderError
          ? err
          // No cause: an error we did not expect may hold anything.
          : new RenderError(file.spec.path, `unexpected ${err instanceof Error ? err.name : typeof err} while rendering (a bug: please report it)`),
      );
    }
  }
  outcome.files = assembleFiles(config, outcome.groups);
  if (envFiles.length > 0) {
    for (const file of envFiles) {
      try {
        if (file.spec.kind === 'envFile') outcome.groups.set(file.spec.path, [envFileOf(file.spec, config, outcome)]);
      } catch (err) {
        outcome.errors.push(err instanceof RenderError ? err : new RenderError(file.spec.path, `unexpected ${err instanceof Error ? err.name : typeof err} while rendering (a bug: please report it)`));
      }
    }
    outcome.files = assembleFiles(config, outcome.groups);
  }
  return outcome;
}

/**
 * An envFile entry: the files rendered directly in its directory (not in a
 * subdirectory, not other env files), each a KEY=value line. One file of that
 * directory that failed, or one value the syntax cannot carry, fails the env
 * file (it keeps its last good bytes, like any file that fails).
 */
function envFileOf(spec: Extract<FileSpec, { kind: 'envFile' }>, config: AgentConfig, outcome: RenderOutcome): RenderedFile {
  const inDir = (path: string): string | undefined => {
    const slash = path.lastIndexOf('/');
    const dir = slash < 0 ? '.' : path.slice(0, slash);
    return dir === spec.dir ? path.slice(slash + 1) : undefined;
  };
  const envPaths = new Set(config.files.filter((f) => f.kind === 'envFile').map((f) => f.path));
  const failed = outcome.errors.map((e) => e.file).filter((p) => inDir(p) !== undefined || p === spec.dir || (spec.dir === '.' && !p.includes('/')));
  if (failed.length > 0) return fail(spec.path, `env file not written again: ${failed.map((p) => JSON.stringify(p)).join(', ')} in ${JSON.stringify(spec.dir)} could not be rendered`, undefined);
  const entries: [string, Buffer][] = [];
  const problems: string[] = [];
  for (const f of outcome.files) {
    const key = envPaths.has(f.path) ? undefined : inDir(f.path);
    if (key === undefined) continue;
    const problem = envKeyProblem(key) === undefined ? envValueProblem(f.content, spec.syntax) : `cannot be a key: it ${envKeyProblem(key)!}`;
    if (problem) problems.push(`key ${JSON.stringify(key)} ${problem}`);
    else entries.push([key, f.content]);
  }
  if (problems.length > 0) {
    return fail(spec.path, `the env file (${spec.syntax} syntax) cannot carry ${problems.length === 1 ? 'one value' : `${problems.length} values`}: ${problems.join('; ')}; the last good env file stays (docs/env-files.md says what each syntax carries)`, undefined);
  }
  return { path: spec.path, content: formatEnvFile(entries, spec.syntax), mode: spec.mode, uid: spec.uid, gid: spec.gid };
}

/**
 * One payload from what each entry of `config.files` gave (by its path):
 * every explicit file, then the keys of the eachKey entries, the later entry
 * first; a key whose path is taken (or is a directory of a taken path, or
 * inside a taken file) is left out. In `config.files` order otherwise.
 */
export function assembleFiles(config: Pick<AgentConfig, 'files'>, groups: ReadonlyMap<string, readonly RenderedFile[]>): RenderedFile[] {
  const taken = new Set<string>();
  const dirs = new Set<string>();
  const keep = new Map<number, RenderedFile[]>();
  const claim = (f: RenderedFile): boolean => {
    const parts = f.path.split('/');
    const ancestors = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
    if (taken.has(f.path) || dirs.has(f.path) || ancestors.some((a) => taken.has(a))) return false;
    taken.add(f.path);
    for (const a of ancestors) dirs.add(a);
    return true;
  };
  const order = config.files.map((spec, i) => ({ spec, i }));
  const explicit = order.filter((e) => e.spec.kind !== 'eachKey');
  const eachKey = order.filter((e) => e.spec.kind === 'eachKey').reverse();
  for (const { spec, i } of [...explicit, ...eachKey]) {
    keep.set(i, (groups.get(spec.path) ?? []).filter(claim));
  }
  return order.flatMap(({ i }) => keep.get(i) ?? []);
}

/** File path -> local names of the secrets it reads; for deciding what a change affects. */
export function secretsUsedBy(compiled: CompiledFiles): ReadonlyMap<string, ReadonlySet<string>> {
  return new Map(compiled.files.map((f) => [f.spec.path, f.secrets]));
}

function missingSecrets(file: CompiledFile, context: TemplateContext): void {
  const missing = [...file.secrets].filter((name) => !context.views.has(name));
  if (missing.length > 0) {
    const names = missing.map((n) => JSON.stringify(n)).join(', ');
    throw new RenderError(file.spec.path, `${missing.length === 1 ? 'secret' : 'secrets'} ${names} ${missing.length === 1 ? 'has' : 'have'} no value (could not be fetched)`);
  }
}

function renderOne(file: CompiledFile, context: TemplateContext, values: ReadonlyMap<string, SecretValue>): Buffer {
  const { spec } = file;
  missingSecrets(file, context);
  if (spec.kind === 'eachKey') throw new Error('eachKey entries are rendered by eachKeyFiles');
  if (spec.kind === 'secret') return secretBytes(spec.path, spec.secret, spec.key, spec.decode, values.get(spec.secret)!);

  const template = file.template!;
  try {
    const out: unknown = engine().renderSync(template.parsed, fileScope(context, spec.secret));
    return Buffer.from(typeof out === 'string' ? out : String(out), 'utf8');
  } catch (err) {
    const { row, message, safe } = describeLiquidError(err, { context, fileSecret: spec.secret, template });
    return fail(spec.path, `${where(template.origin, row)}: ${message}`, safe ? err : undefined);
  }
}

function readProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': return 'permission denied';
    case 'EISDIR': return 'it is a directory';
    default: return err.code ?? err.message;
  }
}

function fail(path: string, message: string, cause: unknown): never {
  throw new RenderError(path, message, cause === undefined ? undefined : { cause });
}

/** The value's bytes: SecretString as UTF-8, SecretBinary as it is. */
function valueBytes(value: SecretValue): Buffer {
  if (value.secretString === undefined && value.secretBinary) return Buffer.from(value.secretBinary);
  return Buffer.from(value.secretString ?? '', 'utf8');
}

/**
 * The JSON text of a value and its parsed tree, for `key` and eachKey; a
 * SecretBinary's bytes are read as that text (as ESO does). Fails naming the
 * secret and saying what it is instead.
 */
function jsonOf(path: string, name: string, value: SecretValue, wanted: string): { text: string; root: JsonNode } {
  const binary = value.secretString === undefined && value.secretBinary !== undefined;
  const text = binary ? Buffer.from(value.secretBinary).toString('utf8') : (value.secretString ?? '');
  const root = parseJson(text);
  if (root === undefined) {
    const view = viewOf(value);
    // An array too deep for the parser is still JSON, only not an object: say so rather than "not JSON".
    const what = binary ? 'binary (SecretBinary) and its bytes are not JSON' : view.tooDeep || /^[\t\n\r ]*[{[]/.test(text) ? notObject(view) : 'not JSON';
    return fail(path, `secret ${JSON.stringify(name)} is ${what}, so ${wanted} cannot be read`, undefined);
  }
  return { text, root };
}

function decoded(path: string, bytes: Buffer, decode: Decoding | undefined, what: string): Buffer {
  const out = decodeBytes(bytes, decode);
  return typeof out === 'string' ? fail(path, `${what} ${out}`, undefined) : out;
}

/** A `kind: 'secret'` file: the value's bytes, or the value at `key` (value.ts), then decoded. */
function secretBytes(path: string, name: string, key: string | undefined, decode: Decoding | undefined, value: SecretValue): Buffer {
  if (key === undefined) return decoded(path, valueBytes(value), decode, `secret ${JSON.stringify(name)}`);
  const wanted = `key ${JSON.stringify(key)}`;
  const { text, root } = jsonOf(path, name, value, wanted);
  if (root.type !== 'object' && root.type !== 'array') return fail(path, `secret ${JSON.stringify(name)} is not a JSON object, so ${wanted} cannot be read`, undefined);
  const node = lookup(root, key);
  if (node === undefined) {
    const top = key.includes('.') ? ` (neither a top-level key of that name nor the path ${keyPathText(key)})` : '';
    return fail(path, `secret ${JSON.stringify(name)} has no ${key.includes('.') ? '' : 'top-level '}${wanted}${top}`, undefined);
  }
  return decoded(path, Buffer.from(gjsonString(text, node), 'utf8'), decode, `${wanted} of secret ${JSON.stringify(name)}`);
}

function keyPathText(key: string): string {
  return key.split('.').map((s) => JSON.stringify(s)).join(' > ');
}

/**
 * An eachKey entry: [key, bytes] for every top-level key of the JSON object
 * (at `key`, when given), decoded. Every key must be a safe file name; one
 * that is not fails the entry, naming the key (never a value).
 */
function eachKeyFiles(path: string, name: string, key: string | undefined, decode: Decoding | undefined, value: SecretValue): [string, Buffer][] {
  const wanted = key === undefined ? 'its keys' : `the keys at key ${JSON.stringify(key)}`;
  const { text, root } = jsonOf(path, name, value, wanted);
  const node = key === undefined ? root : lookup(root, key);
  if (node === undefined) return fail(path, `secret ${JSON.stringify(name)} has no key ${JSON.stringify(key)}`, undefined);
  // Go's json.Unmarshal of null into a map: no keys.
  if (node.type === 'null') return [];
  if (node.type !== 'object') {
    return fail(path, `secret ${JSON.stringify(name)}${key === undefined ? '' : ` at key ${JSON.stringify(key)}`} is not a JSON object, so ${wanted} cannot be written as files`, undefined);
  }
  // Repeated keys: the last wins (Go's encoding/json).
  const byKey = new Map<string, JsonNode>();
  for (const [k, v] of node.entries) byKey.set(k, v);
  const bad = [...byKey.keys()].filter((k) => k.includes('/') || unsafePathReason(k) !== undefined);
  if (bad.length > 0) {
    const shown = bad.slice(0, 5).map((k) => (k.length > 64 ? `${JSON.stringify(k.slice(0, 64))}...` : JSON.stringify(k))).join(', ');
    return fail(
      path,
      `secret ${JSON.stringify(name)} has ${bad.length === 1 ? 'a key' : 'keys'} that cannot be ${bad.length === 1 ? 'a file name' : 'file names'}: ${shown}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''} (use letters, digits, ".", "_" and "-", not starting with "."); rename the key in the secret or write it with an explicit file (key:)`,
      undefined,
    );
  }
  return [...byKey].map(([k, v]) => [k, decoded(path, Buffer.from(extractString(text, v), 'utf8'), decode, `key ${JSON.stringify(k)} of secret ${JSON.stringify(name)}`)]);
}

function notObject(view: SecretView): string {
  if (view.binary) return 'binary (SecretBinary)';
  if (view.invalidJson) return 'not valid JSON (it starts with "{" but does not parse)';
  if (view.tooDeep) return `JSON nested more than ${MAX_JSON_DEPTH} levels deep (too deep to read)`;
  return 'not a JSON object';
}

function where(origin: TemplateOrigin, row: number | undefined): string {
  if (origin.kind === 'file') return row === undefined ? origin.path : `${origin.path}:${row}`;
  if (row === undefined) return origin.firstLine === undefined ? `${origin.configFile} ${origin.keyPath}` : `${origin.configFile}:${origin.firstLine}`;
  if (origin.firstLine === undefined) return `${origin.configFile} ${origin.keyPath} (template line ${row})`;
  return `${origin.configFile}:${origin.firstLine + row - 1} (template line ${row})`;
}

interface Described {
  /** Template line, when known. */
  readonly row: number | undefined;
  readonly message: string;
  /** The error may travel as `cause` (it holds no value). */
  readonly safe: boolean;
}

/**
 * Our message for a LiquidJS error, from a whitelist: what is known to hold
 * only template text or our own words is shown (and may travel as `cause`);
 * anything else is named by its class only, without cause.
 */
function describeLiquidError(err: unknown, render: { context: TemplateContext; fileSecret: string | undefined; template: CompiledTemplate } | undefined): Described {
  if (!(err instanceof Error) || !LiquidError.is(err)) {
    return { row: undefined, message: `template failed (${err instanceof Error ? err.name : typeof err})`, safe: false };
  }
  const row = (err.token as typeof err.token | undefined)?.getPosition()[0];
  const original = err.originalError;
  if (err.name === 'UndefinedVariableError' && original && 'variableName' in original && typeof original.variableName === 'string') {
    const variable = original.variableName;
    if (!render) return { row, message: 'undefined variable', safe: false };
    if (render.template.literalPaths.has(variable)) {
      // Template text: safe to show, and so is the error (its message is this name).
      return { row, message: `undefined variable ${JSON.stringify(variable)}${hint(variable, render.context, render.fileSecret)}`, safe: true };
    }
    // A computed lookup: the resolved name may hold a value. Show what was written.
    const written = row === undefined ? undefined : render.template.computed.get(row);
    const what = written ? ` in ${written.map((w) => JSON.stringify(w)).join(' or ')}` : '';
    return { row, message: `undefined variable${what} (a computed name; not shown, it may hold a secret value)`, safe: false };
  }
  // Our filters' errors are written not to hold values; LiquidJS's own
  // assertions (render and memory limits) carry fixed texts.
  if (original instanceof FilterError || original?.name === 'AssertionError') return { row, message: original.message, safe: true };
  // Parse and tokenization errors quote template text only.
  if (err.name === 'ParseError' || err.name === 'TokenizationError') {
    return { row, message: err.message.replace(/, line:\d+, col:\d+$/, ''), safe: true };
  }
  // Anything else (a TypeError inside a filter, say) may have been built from a value.
  return { row, message: `template failed (${original ? `${err.name}: ${original.name}` : err.name})`, safe: false };
}

/** Why `secrets.db.password` is undefined when the reason is the secret's shape. */
function hint(variable: string, context: TemplateContext, fileSecret: string | undefined): string {
  const parts = variable.split('.');
  let name: string | undefined;
  if (parts[0] === 'secrets' && parts.length > 2) name = parts[1];
  else if (parts[0] === 'secret' && parts.length > 1) name = fileSecret;
  const view = name === undefined ? undefined : context.views.get(name);
  if (name === undefined || !view || isJsonObject(view.value)) return '';
  return ` (secret ${JSON.stringify(name)} is ${notObject(view)})`;
}
