// Rules that relate keys to each other. They run on the raw parsed document
// (not zod's output) so they still report when other keys are invalid: every
// check here first makes sure the values it reads have the right type, and
// says nothing otherwise (the schema reports wrong types).
import { resolve } from 'node:path';
import { didYouMean, show } from './messages.ts';
import type { KeySegment } from './keypath.ts';

export interface RuleIssue {
  readonly path: readonly KeySegment[];
  readonly message: string;
}

type Obj = Readonly<Record<string, unknown>>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function has(o: Obj, key: string): boolean {
  return Object.hasOwn(o, key) && o[key] !== undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

const NOTIFY_KINDS = ['signal', 'exec', 'http'] as const;
const SECRET_KINDS = ['id', 'parameter', 'parameterPath'] as const;

/**
 * Linux's longest path, in bytes, without the terminating NUL (PATH_MAX is 4096
 * with it): a file whose full path is longer cannot be opened by that path, by
 * the app or by anyone (and the writer refuses a path over 4096 bytes under outputDir).
 */
const PATH_MAX = 4095;

/**
 * Every cross-key problem in `config` (a parsed YAML/JSON document).
 * `baseDir`: what a relative outputDir is resolved against (the config file's
 * directory), for the path length limit; without it, "/" (a lower bound).
 */
export function crossCheck(config: unknown, baseDir = '/'): RuleIssue[] {
  if (!isObj(config)) return [];
  const issues: RuleIssue[] = [];
  const add = (path: readonly KeySegment[], message: string): void => {
    issues.push({ path, message });
  };

  // source: keys of the other type.
  const source = config['source'];
  if (isObj(source)) {
    const type = source['type'] ?? 'aws';
    if (type === 'file') {
      for (const k of ['region', 'failoverRegion', 'assumeRoleArn', 'allowNodeRole']) if (has(source, k)) add(['source', k], 'only valid with type: aws; remove it');
      if (!has(source, 'path')) add(['source'], 'type: file needs path (the local secrets file, e.g. path: ./dev-secrets.yaml)');
    } else if (type === 'aws' && has(source, 'path')) {
      add(['source', 'path'], 'only valid with type: file; add type: file or remove path');
    }
    const failover = str(source['failoverRegion']);
    if (type === 'aws' && failover !== undefined && failover === str(source['region'])) {
      add(['source', 'failoverRegion'], `${show(failover)} is source.region itself; name a second region holding replicas of the secrets, or remove failoverRegion`);
    }
  }

  // secrets: one backend each, the keys of that backend; a pinned version has no stage and no refresh.
  const secrets = config['secrets'];
  const declared = isObj(secrets) ? Object.keys(secrets) : secrets === undefined ? [] : undefined;
  const fileSource = isObj(source) && source['type'] === 'file';
  if (isObj(secrets)) {
    for (const [name, s] of Object.entries(secrets)) {
      if (!isObj(s)) continue;
      // In document order, so "mutually exclusive" points at the second one written.
      const kinds = Object.keys(s).filter((k) => (SECRET_KINDS as readonly string[]).includes(k) && has(s, k));
      const [kind, second] = kinds;
      if (kind === undefined) add(['secrets', name], 'needs one of id (Secrets Manager), parameter or parameterPath (SSM Parameter Store)');
      else if (second !== undefined) add(['secrets', name, second], `${kind} and ${second} are mutually exclusive; keep one`);
      if (kind !== undefined && kind !== 'id') {
        for (const k of ['versionStage', 'versionId']) {
          if (has(s, k)) add(['secrets', name, k], `only valid with id (Secrets Manager); a parameter takes version or label`);
        }
        if (fileSource) add(['secrets', name, kind], 'the file source serves Secrets Manager ids only; use id, or source type aws');
      }
      if (!kinds.includes('parameter')) {
        const hint = kind === 'parameterPath' ? ' (a path has no version: every parameter under it is followed)' : '';
        for (const k of ['version', 'label']) if (has(s, k) && kind !== undefined) add(['secrets', name, k], `only valid with parameter${hint}`);
      } else if (has(s, 'version') && has(s, 'label')) {
        add(['secrets', name, 'label'], 'version and label are mutually exclusive; keep one (version pins one version)');
      }
      if (has(s, 'version') && kind === 'parameter' && has(s, 'refreshInterval')) {
        add(['secrets', name, 'refreshInterval'], 'has no effect with version (a pinned version is never refreshed); remove it');
      }
      if (!has(s, 'versionId')) continue;
      if (has(s, 'versionStage')) add(['secrets', name, 'versionId'], 'versionStage and versionId are mutually exclusive; keep one (versionId pins one version)');
      if (has(s, 'refreshInterval')) add(['secrets', name, 'refreshInterval'], 'has no effect with versionId (a pinned version is never refreshed); remove it');
    }
  }

  // --- targets ---
  // targets: distinct, none inside another (each is a writer root of its own).
  const targetList = config['targets'];
  const targets: string[] = [];
  if (Array.isArray(targetList)) {
    targetList.forEach((t: unknown, i) => {
      if (typeof t !== 'string') return;
      const j = targets.findIndex((o) => o === t || t.startsWith(`${o}/`) || o.startsWith(`${t}/`));
      const other = targetList.indexOf(targets[j]);
      if (j >= 0 && targets[j] === t) add(['targets', i], `${show(t)} is already targets[${other}]; list each target once`);
      else if (j >= 0) {
        const [outer, inner] = t.startsWith(`${targets[j]}/`) ? [targets[j]!, t] : [t, targets[j]!];
        add(['targets', i], `${show(inner)} is inside the target ${show(outer)} (targets[${other}]): each target is a root of its own and cannot hold another; make them siblings`);
      }
      targets.push(t);
    });
  }
  /** The target a path is under (a dir may be the target itself), or undefined. */
  const targetOf = (p: string, dir: boolean): string | undefined => targets.find((t) => p.startsWith(`${t}/`) || (dir && p === t));
  const needTarget = (p: string, at: readonly KeySegment[], dir: boolean): void => {
    if (targets.length === 0 || targetOf(p, dir) !== undefined) return;
    const list = [...new Set(targets)].map((t) => show(t)).join(', ');
    if (!dir && targets.includes(p)) add(at, `${show(p)} is a target (a directory); put the file inside it, e.g. ${show(`${p}/${p.split('/').pop()!}`)}`);
    else add(at, `${show(p)} is under none of the targets (${list}): with targets, every ${dir ? 'dir' : 'path'} starts with one (e.g. ${show(`${targets[0]!}/${dir && p === '.' ? '' : p}`.replace(/\/$/, ''))})`);
  };
  // --- end targets ---

  // files: one content source, key only for raw secrets, known secrets, distinct paths.
  const files = config['files'];
  const paths = new PathIndex();
  const outputDir = str(config['outputDir']);
  const outputDirBytes = outputDir === undefined || outputDir === '' ? undefined : Buffer.byteLength(resolve(baseDir, outputDir));
  if (Array.isArray(files)) {
    files.forEach((f: unknown, i) => {
      if (!isObj(f)) return;
      const template = has(f, 'template');
      const templateFile = has(f, 'templateFile');
      const secret = has(f, 'secret');
      if (template && templateFile) add(['files', i, 'templateFile'], 'template and templateFile are mutually exclusive; keep one');
      // --- env files ---
      const envFile = has(f, 'envFile');
      if (envFile) {
        for (const k of ['template', 'templateFile', 'secret', 'eachKey']) {
          if (has(f, k)) add(['files', i, k], `not allowed with envFile (the env file takes its keys and values from the files in ${show(str(f['envFile']) ?? '')})`);
        }
        if (!has(f, 'path')) add(['files', i], 'envFile needs path (the env file to write, e.g. path: app.env)');
      } else if (has(f, 'envSyntax')) add(['files', i, 'envSyntax'], 'only valid with envFile');
      // --- end env files ---
      if (!template && !templateFile && !secret && !envFile) add(['files', i], 'needs content: one of template, templateFile, secret or envFile');
      // --- eachKey files and decode ---
      const dir = has(f, 'dir');
      if (dir && has(f, 'path')) add(['files', i, 'dir'], 'path and dir are mutually exclusive; use path for one file, dir with eachKey: true for one file per key');
      else if (!dir && !has(f, 'path')) add(['files', i], 'needs path (the file to write), or dir with eachKey: true (one file per key of a secret)');
      if (dir && !has(f, 'eachKey')) add(['files', i, 'dir'], 'needs eachKey: true (one file per top-level key of the secret)');
      if (has(f, 'eachKey') && !dir) add(['files', i, 'eachKey'], 'needs dir (the directory for the keys; "." for outputDir itself) instead of path');
      if (dir || has(f, 'eachKey')) {
        if (!secret) add(['files', i], 'eachKey needs secret (whose keys become the files)');
        if (template || templateFile) add(['files', i, template ? 'template' : 'templateFile'], 'not allowed with eachKey (each key is written raw)');
      }
      if (has(f, 'decode')) {
        if (!secret) add(['files', i, 'decode'], 'only valid with secret (decode applies to the secret\'s bytes)');
        else if (template || templateFile) add(['files', i, 'decode'], 'not allowed with a template; use {{ secret.FIELD | base64_decode }} in the template instead');
      }
      // --- end eachKey files and decode ---
      if (has(f, 'key')) {
        if (!secret) add(['files', i, 'key'], 'only valid with secret (key picks one JSON field of that secret)');
        else if (template || templateFile) add(['files', i, 'key'], 'not allowed with a template; use {{ secret.FIELD }} in the template instead');
      }
      const ref = str(f['secret']);
      if (ref !== undefined && declared !== undefined && !declared.includes(ref)) {
        const hint = declared.length === 0 ? ' (no secrets are declared)' : didYouMean(ref, declared);
        add(['files', i, 'secret'], `${show(ref)} is not declared under secrets${hint}`);
      }
      // --- eachKey files and decode ---
      // An eachKey dir is a directory: files may go inside it (they win over a
      // key of the same name), and several eachKey entries may share it.
      const eachKeyDir = str(f['dir']);
      if (eachKeyDir !== undefined && str(f['path']) === undefined) {
        const clash = eachKeyDir === '.' ? undefined : paths.fileAtOrAbove(eachKeyDir);
        if (clash) add(['files', i, 'dir'], `${show(eachKeyDir)} would be a directory, but files[${clash.index}] (${show(clash.path)}) is a file there`);
        needTarget(eachKeyDir, ['files', i, 'dir'], true);
        paths.addDir(eachKeyDir, i);
        return;
      }
      // --- end eachKey files and decode ---
      const path = str(f['path']);
      if (path === undefined) return;
      needTarget(path, ['files', i, 'path'], false);
      const dirClash = paths.dirAtOrBelow(path);
      if (dirClash) {
        add(['files', i, 'path'], `${show(path)} is a file, but files[${dirClash.index}] writes one file per key into a directory there (dir: ${show(dirClash.path)})`);
        return;
      }
      const clash = paths.fileClash(path);
      if (clash?.path === path) add(['files', i, 'path'], `${show(path)} is already the path of files[${clash.index}]`);
      else if (clash && path.startsWith(`${clash.path}/`)) add(['files', i, 'path'], `${show(path)} would be inside ${show(clash.path)}, which is a file (files[${clash.index}])`);
      else if (clash) add(['files', i, 'path'], `${show(path)} is a file, but files[${clash.index}] (${show(clash.path)}) needs it to be a directory`);
      // Names over 255 bytes are the schema's to report.
      const bytes = outputDirBytes === undefined ? undefined : outputDirBytes + 1 + Buffer.byteLength(path);
      if (bytes !== undefined && bytes > PATH_MAX && path.split('/').every((seg) => Buffer.byteLength(seg) <= 255)) {
        add(
          ['files', i, 'path'],
          `${show(path)} is too long: with outputDir its full path is ${bytes} bytes, over Linux's limit of ${PATH_MAX} (PATH_MAX), so it could not be opened; shorten the path or outputDir`,
        );
      }
      paths.addFile(path, i);
    });
  }

  // notify: one kind each, the keys of that kind, known files, unique names.
  const notify = config['notify'];
  if (Array.isArray(notify)) {
    const names = new Map<string, number>();
    const filePaths = Array.isArray(files) ? paths.all() : undefined;
    const filePathSet = new Set(filePaths);
    notify.forEach((n: unknown, i) => {
      if (!isObj(n)) return;
      // In document order, so "mutually exclusive" points at the second one written.
      const kinds = Object.keys(n).filter((k): k is (typeof NOTIFY_KINDS)[number] => (NOTIFY_KINDS as readonly string[]).includes(k) && has(n, k));
      const [kind, second] = kinds;
      if (kind === undefined) add(['notify', i], 'needs one of signal, exec or http');
      else if (second !== undefined) add(['notify', i, second], `${kind} and ${second} are mutually exclusive; use one notify entry for each`);
      if (kind === 'signal' && second === undefined) {
        if (has(n, 'process') && has(n, 'pidFile')) add(['notify', i, 'pidFile'], 'process and pidFile are mutually exclusive; keep one');
        if (!has(n, 'process') && !has(n, 'pidFile')) add(['notify', i], 'signal needs process (a process name) or pidFile');
        if (has(n, 'timeout')) add(['notify', i, 'timeout'], 'only valid with exec or http');
      } else if (kinds.length === 1) {
        for (const k of ['process', 'pidFile']) if (has(n, k)) add(['notify', i, k], 'only valid with signal');
      }
      const targets = n['files'];
      if (Array.isArray(targets) && filePaths !== undefined) {
        targets.forEach((t: unknown, j) => {
          if (typeof t === 'string' && !filePathSet.has(t)) {
            add(['notify', i, 'files', j], `${show(t)} is not the path of any entry under files${didYouMean(t, filePaths)}`);
          }
        });
      }
      const name = str(n['name']);
      if (name !== undefined) {
        const first = names.get(name);
        if (first === undefined) names.set(name, i);
        else add(['notify', i, 'name'], `${show(name)} is already the name of notify[${first}]; names must be unique`);
      }
    });
  }
  return issues;
}

/** `a/b/c` -> `a`, `a/b`. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

interface Placed {
  readonly path: string;
  readonly index: number;
}

/**
 * The paths seen so far, indexed so that each question about a new path costs
 * its number of segments, not the number of files (validate of 50,000 files
 * stays linear): files by path, eachKey dirs by path, and every directory some
 * file or eachKey dir needs (its ancestors), each with the first entry that
 * needs it.
 */
class PathIndex {
  readonly #files = new Map<string, Placed>();
  readonly #dirs = new Map<string, Placed>();
  /** A directory -> the first file below it. */
  readonly #aboveFiles = new Map<string, Placed>();
  /** A directory -> the first eachKey dir below it. */
  readonly #aboveDirs = new Map<string, Placed>();
  /** Every path added, files and dirs, in the order added. */
  readonly #all: string[] = [];

  all(): string[] {
    return [...this.#all];
  }

  addFile(path: string, index: number): void {
    const p = { path, index };
    this.#all.push(path);
    if (!this.#files.has(path)) this.#files.set(path, p);
    for (const a of ancestors(path)) if (!this.#aboveFiles.has(a)) this.#aboveFiles.set(a, p);
  }

  addDir(path: string, index: number): void {
    const p = { path, index };
    this.#all.push(path);
    if (!this.#dirs.has(path)) this.#dirs.set(path, p);
    for (const a of ancestors(path)) if (!this.#aboveDirs.has(a)) this.#aboveDirs.set(a, p);
  }

  /** A file at `path` or at one of its ancestors (so `path` cannot be a directory). */
  fileAtOrAbove(path: string): Placed | undefined {
    return this.#files.get(path) ?? this.#firstOf(ancestors(path).map((a) => this.#files.get(a)));
  }

  /** An eachKey dir at `path` or below it (so `path` cannot be a file). */
  dirAtOrBelow(path: string): Placed | undefined {
    return this.#dirs.get(path) ?? this.#aboveDirs.get(path);
  }

  /** A file that clashes with a file at `path`: the same path, a file above it, or a file below it. */
  fileClash(path: string): Placed | undefined {
    return this.#firstOf([this.#files.get(path), ...ancestors(path).map((a) => this.#files.get(a)), this.#aboveFiles.get(path)]);
  }

  /** The one declared first (lowest index), as a scan in declaration order would find. */
  #firstOf(found: readonly (Placed | undefined)[]): Placed | undefined {
    let first: Placed | undefined;
    for (const p of found) if (p && (!first || p.index < first.index)) first = p;
    return first;
  }
}
