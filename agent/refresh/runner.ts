// The sidecar's loop: first render, then refresh, coalesce, write, notify.
//
//   scheduler --check--> DescribeSecret (+ GetSecretValue if the stage moved)
//             --changed--> coalesce window --> one commit --> one notify
//
// Commits are serialized: a change found while a commit is in flight marks the
// runner dirty and is committed right after, so many changes close together make
// one generation and one notification, never a storm.
import pRetry from 'p-retry';
import type { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { Notifier } from '../notify/index.ts';
import type { Pipeline } from '../pipeline.ts';
import type { SecretSpec } from '../types.ts';
import { Scheduler, type CheckOutcome } from './scheduler.ts';

export interface RunnerOptions {
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly pipeline: Pipeline;
  readonly notifier: Notifier;
  /** Changes found within this window are written together. @default min(500 ms, interval / 4) */
  readonly coalesceMs?: number;
}

export class Runner {
  readonly #log: Logger;
  readonly #metrics: AgentMetrics;
  #pipeline: Pipeline;
  #notifier: Notifier;
  readonly #scheduler: Scheduler;
  readonly #stop = new AbortController();
  #ready = false;
  #commitTimer: NodeJS.Timeout | undefined;
  /** A write that failed is retried on its own timer. */
  #retryTimer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #dirty = false;
  /** The error of the last commit, undefined after a successful one. */
  #lastWriteError: Error | undefined;
  #coalesceMs: number;
  #coalesceFixed: boolean;

  constructor(options: RunnerOptions) {
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#pipeline = options.pipeline;
    this.#notifier = options.notifier;
    const refresh = this.#pipeline.config.refresh;
    this.#coalesceFixed = options.coalesceMs !== undefined;
    this.#coalesceMs = options.coalesceMs ?? Math.min(500, refresh.intervalMs / 4);
    this.#scheduler = new Scheduler({
      log: this.#log,
      intervalMs: refresh.intervalMs,
      jitter: refresh.jitter,
      rotationAware: refresh.rotationAware,
      check: (spec, signal) => this.#check(spec, signal),
      onCheckResult: (spec, err) => this.#metrics.secretChecked(spec.name, err ? 'error' : 'success'),
    });
  }

  get ready(): boolean {
    return this.#ready;
  }

  get pipeline(): Pipeline {
    return this.#pipeline;
  }

  /**
   * The first render: every secret fetched (batched) and every file rendered,
   * retried with backoff (capped at the interval) until it succeeds or stop().
   * Resolves false when stopped before succeeding.
   */
  async firstRender(): Promise<boolean> {
    const { config } = this.#pipeline;
    let pending: readonly SecretSpec[] = config.secrets;
    const logged = new Set<string>();
    const reportOnce = (e: { message: string }, fields: Record<string, unknown>): void => {
      if (logged.has(e.message)) return;
      logged.add(e.message);
      this.#log.error(fields, e.message);
    };
    try {
      await pRetry(
        async () => {
          const failures = await this.#pipeline.load(pending, this.#stop.signal);
          pending = pending.filter((s) => failures.has(s.name));
          for (const e of failures.values()) reportOnce(e, { secret: e.secret, code: e.code, transient: e.transient });
          if (pending.length > 0) throw new Error(`${pending.length} secret(s) not available yet`);
          await this.#pipeline.writer.prepare();
          const out = await this.#pipeline.commit('strict');
          if (out.renderErrors.length > 0) {
            for (const e of out.renderErrors) reportOnce(e, { file: e.file });
            throw new Error(`${out.renderErrors.length} file(s) could not be rendered`);
          }
        },
        {
          retries: Infinity,
          minTimeout: 500,
          maxTimeout: Math.max(1000, config.refresh.intervalMs),
          randomize: true,
          signal: this.#stop.signal,
          unref: true,
          onFailedAttempt: ({ error, retryDelay }) =>
            this.#log.warn({ retryInMs: Math.round(retryDelay) }, `first render not complete: ${error.message}; retrying`),
        },
      );
    } catch (err) {
      if (this.#stop.signal.aborted) return false;
      throw err;
    }
    this.#ready = true;
    this.#metrics.setReady(true);
    this.#log.info({ outputDir: config.outputDir, files: config.files.length, secrets: config.secrets.length }, 'first render complete; ready');
    this.#scheduler.setSecrets(config.secrets);
    return true;
  }

  /** One check: DescribeSecret; GetSecretValue only when the version carrying the stage moved. */
  async #check(spec: SecretSpec, signal: AbortSignal): Promise<CheckOutcome> {
    const pipeline = this.#pipeline;
    const metadata = await pipeline.source.describe(spec, signal);
    const current = pipeline.values.get(spec.name);
    if (metadata.versionIdForStage !== undefined && metadata.versionIdForStage === current?.versionId) {
      return { metadata, changed: false };
    }
    let value;
    try {
      value = await pipeline.source.fetch(spec, signal);
      this.#metrics.secretFetched(spec.name, 'success');
    } catch (err) {
      this.#metrics.secretFetched(spec.name, 'error');
      throw err as SourceError;
    }
    // A config reload may have replaced the pipeline while we were fetching.
    if (this.#pipeline !== pipeline) return { metadata, changed: false };
    const changed = value.versionId !== current?.versionId;
    if (changed) {
      pipeline.accept(spec.name, value);
      this.#log.info({ secret: spec.name, from: current?.versionId, to: value.versionId }, 'new secret version');
      this.requestCommit();
    }
    return { metadata, changed };
  }

  /** Ask for a commit after the coalescing window (changes close together make one write). */
  requestCommit(): void {
    this.#dirty = true;
    if (this.#commitTimer || this.#stop.signal.aborted) return;
    this.#commitTimer = setTimeout(() => {
      this.#commitTimer = undefined;
      void this.#drain();
    }, this.#coalesceMs);
    this.#commitTimer.unref();
  }

  async #drain(): Promise<void> {
    if (this.#committing) return this.#committing; // the running drain loops while dirty
    const run = async (): Promise<void> => {
      while (this.#dirty && !this.#stop.signal.aborted) {
        this.#dirty = false;
        await this.#commitOnce();
      }
    };
    this.#committing = run().finally(() => {
      this.#committing = undefined;
    });
    await this.#committing;
  }

  async #commitOnce(): Promise<void> {
    try {
      const out = await this.#pipeline.commit('lenient');
      for (const e of out.renderErrors) this.#log.error({ file: e.file }, `${e.message}; keeping its previous content`);
      this.#lastWriteError = undefined;
      const changed = out.write?.changed ?? [];
      if (changed.length > 0 && !this.#stop.signal.aborted) {
        await this.#notifier.notify(changed, {
          outputDir: this.#pipeline.config.outputDir,
          ...(out.write?.generation ? { generation: out.write.generation } : {}),
        });
      }
    } catch (err) {
      this.#lastWriteError = err as Error;
      this.#metrics.filesWritten('error');
      // The previous generation is intact, and the new values are already the ones in use:
      // no later check will see a change, so retry the write itself (ENOSPC clears, EACCES gets fixed).
      const retryMs = Math.min(5000, this.#pipeline.config.refresh.intervalMs);
      this.#log.error({ code: (err as { code?: string }).code, retryInMs: retryMs }, `${(err as Error).message}`);
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.requestCommit(), retryMs);
      this.#retryTimer.unref();
    }
  }

  /** Check every secret now (the file source changed). */
  checkAllNow(): void {
    this.#scheduler.checkAllNow();
  }

  /**
   * Swap in a new configuration (hot reload): values of secrets whose source did
   * not change carry over, new ones are fetched, then one lenient commit;
   * the app is notified only if bytes changed. Resolves with the error when that
   * commit failed (the new config is in force and its write is retried).
   */
  async reload(next: Pipeline, notifier: Notifier): Promise<Error | undefined> {
    const old = this.#pipeline;
    const oldSpecs = old.specsByName();
    const toFetch: SecretSpec[] = [];
    for (const spec of next.config.secrets) {
      const was = oldSpecs.get(spec.name);
      const v = old.values.get(spec.name);
      if (was && v && was.id === spec.id && was.versionStage === spec.versionStage && was.versionId === spec.versionId) {
        next.accept(spec.name, v);
      } else {
        toFetch.push(spec);
      }
    }
    const failures = await next.load(toFetch, this.#stop.signal);
    for (const e of failures.values()) this.#log.error({ secret: e.secret, code: e.code }, e.message);
    await this.#committing;
    const oldNotifier = this.#notifier;
    this.#pipeline = next;
    this.#notifier = notifier;
    await oldNotifier.stop();
    if (!this.#coalesceFixed) this.#coalesceMs = Math.min(500, next.config.refresh.intervalMs / 4);
    this.#scheduler.setRefresh(next.config.refresh);
    this.#scheduler.setSecrets(next.config.secrets);
    this.#dirty = true;
    await this.#drain();
    return this.#lastWriteError;
  }

  /** Stop checking, let the write in flight finish, cancel pending notifications. */
  async stop(): Promise<void> {
    this.#stop.abort(new Error('shutting down'));
    clearTimeout(this.#commitTimer);
    clearTimeout(this.#retryTimer);
    await this.#scheduler.stop();
    await this.#committing;
    await this.#notifier.stop();
  }
}
