// The pipeline shared by `init`, `render` and `run`: values in, one generation out.
//
//   source --fetch--> values (last known good, per secret)
//          --render-> files  (last known good, per file)
//          --write--> one atomic generation (with targets: one per target,
//                     written in order; output/targets.ts)
//
// "Did anything change?" is decided at three levels, each in one place:
//   1. a secret's version moved: versionMoved() below, applied by
//      Pipeline.accept() (every value taken in goes through it) and used by the
//      refresh loop (refresh/runner.ts) to skip the fetch when the version
//      carrying the stage is the one held;
//   2. a file's bytes, mode, owner or link differ from what is on the volume:
//      the writer alone (output/index.ts, OutputWriter.write; WriteResult.changed,
//      empty = nothing written);
//   3. a notify target is due: one of its `files` is among the changed ones
//      (notify/index.ts, createNotifier step 1).
// Whether two specs read the same value (a reload carries it over) is
// sameSource() in types.ts. The first render and its retries, for `init` and
// `run` alike, are refresh/first-render.ts.
//
// Not safe for concurrent callers: the refresh loop serializes commits.
import type { SourceError } from './errors.ts';
import type { Logger } from './observe/log.ts';
import type { AgentMetrics } from './observe/metrics.ts';
import { assembleFiles, renderFiles, type CompiledFiles } from './render/render.ts';
import type { OutputWriter, WriteResult } from './output/index.ts';
import type { FetchResult, SecretSource } from './source/source.ts';
import type { AgentConfig, RenderedFile, SecretSpec, SecretValue } from './types.ts';
import type { RenderError } from './errors.ts';

export interface CommitOutcome {
  /** Undefined when nothing was written because rendering failed in strict mode. */
  readonly write?: WriteResult;
  readonly renderErrors: readonly RenderError[];
}

export class Pipeline {
  readonly config: AgentConfig;
  readonly compiled: CompiledFiles;
  readonly source: SecretSource;
  readonly writer: OutputWriter;
  readonly #log: Logger;
  readonly #metrics: AgentMetrics | undefined;
  /** Last known good value of each secret (by local name). */
  readonly values = new Map<string, SecretValue>();
  /** Last rendered files of each entry of `files` that rendered at least once (by its path). */
  readonly #lastGood = new Map<string, readonly RenderedFile[]>();
  /** What the last successful write put on the volume: the live generation, which verify() restores. */
  #lastWritten: readonly RenderedFile[] | undefined;

  constructor(init: {
    config: AgentConfig;
    compiled: CompiledFiles;
    source: SecretSource;
    writer: OutputWriter;
    log: Logger;
    metrics?: AgentMetrics;
  }) {
    this.config = init.config;
    this.compiled = init.compiled;
    this.source = init.source;
    this.writer = init.writer;
    this.#log = init.log;
    this.#metrics = init.metrics;
  }

  /**
   * Hot reload: take over the last good files of `previous` for every entry of
   * `files` this config still has (by path), so that an entry whose render fails
   * right after the reload keeps its previous content instead of leaving the
   * volume. Entries the new config dropped are not taken (the writer removes them).
   */
  inheritLastGood(previous: Pipeline): void {
    for (const spec of this.config.files) {
      const group = previous.#lastGood.get(spec.path);
      if (group && !this.#lastGood.has(spec.path)) this.#lastGood.set(spec.path, group);
    }
  }

  specsByName(): Map<string, SecretSpec> {
    return new Map(this.config.secrets.map((s) => [s.name, s]));
  }

  /**
   * Fetch the given secrets (batched), keep what arrived, return the failures by local name.
   */
  async load(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SourceError>> {
    const failures = new Map<string, SourceError>();
    if (specs.length === 0) return failures;
    const results: Map<string, FetchResult> = await this.source.fetchAll(specs, signal);
    for (const spec of specs) {
      const r = results.get(spec.name);
      if (r === undefined) continue;
      if (r instanceof Error) {
        failures.set(spec.name, r);
        this.#metrics?.secretFetched(spec.name, 'error');
      } else {
        this.accept(spec.name, r);
        this.#metrics?.secretFetched(spec.name, 'success');
      }
    }
    return failures;
  }

  /**
   * Take a fetched value in as the one in use, unless it is the version already
   * held. Returns true when it was taken (the first value of the secret, or a
   * new version): the files must be rendered again.
   */
  accept(name: string, value: SecretValue): boolean {
    const old = this.values.get(name);
    if (!versionMoved(old, value.versionId)) return false;
    this.values.set(name, value);
    if (old !== undefined) this.#metrics?.versionChanged(name, value.createdDate);
    else if (value.createdDate) this.#metrics?.versionCreated(name, value.createdDate);
    return true;
  }

  /**
   * Render every file and write one generation.
   * strict: any render error means nothing is written (init, the first render of run).
   * lenient: a file that fails keeps its last good bytes, so one bad template or
   * secret never blocks the others from refreshing; a file that never rendered is left out.
   */
  async commit(mode: 'strict' | 'lenient'): Promise<CommitOutcome> {
    // A copy: rendering yields to the event loop, and a check accepting a value
    // meanwhile must not end up in this generation beside values it did not come with.
    const outcome = await renderFiles(this.config, this.compiled, new Map(this.values));
    const failed = new Set(outcome.errors.map((e) => e.file));
    for (const path of outcome.groups.keys()) this.#metrics?.fileRendered(path, 'success');
    for (const e of outcome.errors) this.#metrics?.fileRendered(e.file, 'error');
    if (mode === 'strict' && outcome.errors.length > 0) return { renderErrors: outcome.errors };
    // Per entry of `files` (an eachKey entry is one group of files): fresh, else last good.
    const groups = new Map<string, readonly RenderedFile[]>();
    for (const spec of this.config.files) {
      const fresh = failed.has(spec.path) ? undefined : outcome.groups.get(spec.path);
      const group = fresh ?? this.#lastGood.get(spec.path);
      if (group) groups.set(spec.path, group);
    }
    const files = assembleFiles(this.config, groups);
    const write = await this.writer.write(files);
    this.#lastWritten = files;
    for (const [path, group] of outcome.groups) this.#lastGood.set(path, group);
    if (write.changed.length > 0) {
      const now = new Date();
      this.#metrics?.generationWritten(now);
      // With targets: each target that changed has its own generation.
      for (const t of write.targets ?? []) if (t.changed.length > 0) this.#metrics?.targetWritten(t.target, now);
    } else {
      this.#metrics?.filesWritten('unchanged');
      this.#log.debug('rendered files unchanged; nothing written');
    }
    return { write, renderErrors: outcome.errors };
  }

  /**
   * A verify round (the sidecar, every interval): write the files of the last
   * successful commit again, without rendering. The writer compares them with
   * the volume (names, link targets, modes, owners, sizes, bytes: level 2) and
   * writes only what differs: a file of the live generation removed, chmod-ed
   * or edited, a user-visible link removed or replaced. Undefined before the
   * first successful commit of this pipeline.
   */
  async verify(): Promise<WriteResult | undefined> {
    if (this.#lastWritten === undefined) return undefined;
    const write = await this.writer.write(this.#lastWritten);
    if (write.changed.length > 0) {
      const now = new Date();
      this.#metrics?.generationWritten(now);
      for (const t of write.targets ?? []) if (t.changed.length > 0) this.#metrics?.targetWritten(t.target, now);
    }
    return write;
  }
}

/**
 * Level 1 of "did anything change?": the version seen at the source (a fetched
 * value's, or the one DescribeSecret says carries the stage) is not the one
 * held. No value held, or no version carrying the stage, counts as moved: the
 * value must be fetched. Versions are immutable in Secrets Manager (and the
 * file source derives its version from the bytes), so the same version id
 * means the same value.
 */
export function versionMoved(held: SecretValue | undefined, seen: string | undefined): boolean {
  return held === undefined || seen === undefined || held.versionId !== seen;
}
