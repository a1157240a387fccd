// The sidecar's loop: first render, then refresh, coalesce, write, notify.
//
//   scheduler --check--> DescribeSecret (+ GetSecretValue if the stage moved)
//             --changed--> coalesce window --> one commit --> one notify
//
// Commits are serialized: a change found while a commit is in flight marks the
// runner dirty and is committed right after, so many changes close together make
// one generation and one notification, never a storm.
//
// Until the first generation exists there is no schedule: the first render is
// retried (refresh/first-render.ts, the loop `init` runs too; here with backoff
// capped at the interval, or at once when the file source
// changes or the config is reloaded), and every attempt re-checks every secret
// it already holds (DescribeSecret; GetSecretValue only where the version moved)
// and fetches the ones it does not, so fixing a secret that made a template
// fail is enough for the agent to become ready.
//
// A source read as a whole (the file source) is accepted one read at a time
// (refresh/snapshot.ts).
//
// Checks that fall due together (within the coalescing window) share requests
// when the source can describe several specs at once (SecretSource.describeMany:
// ListSecrets with refresh.batchChecks, GetParameters for SSM): the scheduler
// hands them over as one group, the runner describes them in one go and fetches
// only the ones whose version moved. Where that saves requests (SSM always,
// Secrets Manager with batchChecks) the scheduler checks such secrets in rounds
// per interval, one jittered draw per round, so they keep falling due together.
// Retries, terminal-error logs, rotation probes and metrics stay per secret
// (refresh/scheduler.ts; the rounds: refresh/rounds.ts).
//
// A secret scheduled for deletion keeps serving its last value
// (refresh/deletion.ts).
//
// Verify rounds: once the first generation exists, every refresh interval (at
// most once a second), and at once when the volume lock was taken back, the
// runner writes the last committed files again without rendering
// (Pipeline.verify); the writer compares them with the volume and restores
// only what differs (a file of the live generation removed or chmod-ed, a link
// removed), counted in secrets_agent_volume_repairs_total, and the consumers of
// the restored files are notified. While another agent holds the volume lock (output/lock.ts: the
// lease was lost) the runner is not ready (notReadyReason) and writes nothing
// until the lease is its own again.
import path from 'node:path';
import pLimit from 'p-limit';
import type { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { Notifier } from '../notify/index.ts';
import { lostLocks, onLockEvent, type LockEvent } from '../output/lock.ts';
import { versionMoved, type Pipeline } from '../pipeline.ts';
import { kindOf, sameSource, type SecretMetadata, type SecretSpec } from '../types.ts';
import { DeletionReporter } from './deletion.ts';
import { firstRender } from './first-render.ts';
import { Scheduler, type CheckOutcome } from './scheduler.ts';
import { SnapshotApplier, snapshotMetadata } from './snapshot.ts';

/** First render: the first retry waits about this long, doubling up to the refresh interval. */
const FIRST_RETRY_MS = 500;
/** First render: secrets re-checked in parallel at most. */
const FIRST_CHECK_CONCURRENCY = 8;
/** Verify rounds come every refresh interval, but not more often than this (a 10 ms interval need not re-read the volume 100 times a second). */
const VERIFY_MIN_MS = 1000;
/** A group check: values fetched in parallel at most (only the moved ones are fetched). */
const GROUP_FETCH_CONCURRENCY = 8;

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
  /** Why the first render is not complete yet (names and codes only): /readyz shows it. */
  #notReady = 'the first render has not finished its first attempt yet';
  #commitTimer: NodeJS.Timeout | undefined;
  /** A write that failed is retried on its own timer. */
  #retryTimer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #dirty = false;
  /** The error of the last commit, undefined after a successful one. */
  #lastWriteError: Error | undefined;
  #coalesceMs: number;
  #coalesceFixed: boolean;
  /** Cuts the first render's wait before its next attempt short (a source change, a reload). */
  #wake: (() => void) | undefined;
  #firstRun: Promise<boolean> | undefined;
  readonly #snapshots: SnapshotApplier;
  readonly #deletions: DeletionReporter;
  /** A verify round is wanted (the drain runs it when no commit is pending). */
  #verifyWanted = false;
  #verifyTimer: NodeJS.Timeout | undefined;
  readonly #unsubscribeLock: () => void;

  constructor(options: RunnerOptions) {
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#pipeline = options.pipeline;
    this.#notifier = options.notifier;
    this.#snapshots = new SnapshotApplier(this.#log, this.#metrics);
    this.#deletions = new DeletionReporter(this.#log, this.#metrics);
    const refresh = this.#pipeline.config.refresh;
    this.#coalesceFixed = options.coalesceMs !== undefined;
    this.#coalesceMs = options.coalesceMs ?? Math.min(500, refresh.intervalMs / 4);
    this.#scheduler = new Scheduler({
      log: this.#log,
      intervalMs: refresh.intervalMs,
      jitter: refresh.jitter,
      rotationAware: refresh.rotationAware,
      check: (spec, signal) => this.#check(spec, signal),
      checkMany: (specs, signal) => this.#checkMany(specs, signal),
      groupWindowMs: () => {
        const source = this.#pipeline.source;
        return source.describeMany && !source.readSnapshot ? this.#coalesceMs : undefined;
      },
      // Where a grouped check saves requests (the scheduler then checks in rounds):
      // SSM parameters always (GetParameters, 10 names), Secrets Manager only with
      // batchChecks (ListSecrets); otherwise describeMany is one DescribeSecret each.
      batches: (spec) => {
        const { source, config } = this.#pipeline;
        return source.kind === 'aws' && !source.readSnapshot && (kindOf(spec) !== 'secret' || config.refresh.batchChecks === true);
      },
      onCheckResult: (spec, err) => this.#metrics.secretChecked(spec.name, err ? 'error' : 'success'),
    });
    this.#unsubscribeLock = onLockEvent((e) => this.#onLock(e));
  }

  /** Ready: the first render is complete and this agent holds the volume lock. */
  get ready(): boolean {
    return this.#ready && this.#lockLost() === undefined;
  }

  /**
   * Why not ready, for /readyz; undefined when ready. Names and codes, never values: before the
   * first render, its last failed attempt (the secrets it waits for, the files it cannot render,
   * the write error); after it, a volume lock another agent holds.
   */
  get notReadyReason(): string | undefined {
    if (!this.#ready) return this.#notReady;
    const lost = this.#lockLost();
    return lost === undefined ? undefined : `volume lock lost: ${lost}`;
  }

  /** Whether the volume lock of this pipeline's outputDir (or one of its targets) is held by another agent now. */
  #lockLost(): string | undefined {
    for (const [dir, reason] of lostLocks()) if (this.#ours(dir)) return `${dir}: ${reason}`;
    return undefined;
  }

  #ours(dir: string): boolean {
    const out = path.resolve(this.#pipeline.config.outputDir);
    return dir === out || dir.startsWith(`${out}/`);
  }

  #onLock(e: LockEvent): void {
    if (!this.#ours(e.dir) || this.#stop.signal.aborted) return;
    if (e.event === 'lost' || !e.wasLost) this.#metrics.volumeLockLost();
    this.#metrics.setReady(this.ready);
    // Taken back: whatever the other writer did to the volume is undone now, not at the next round.
    if (e.event === 'retaken') this.#requestVerify();
  }

  /** Every interval after the first render: a verify round (see the header). */
  #armVerify(): void {
    clearInterval(this.#verifyTimer);
    if (this.#stop.signal.aborted) return;
    this.#verifyTimer = setInterval(() => this.#requestVerify(), Math.max(VERIFY_MIN_MS, this.#pipeline.config.refresh.intervalMs));
    this.#verifyTimer.unref();
  }

  #requestVerify(): void {
    if (!this.#ready || this.#stop.signal.aborted || this.#lockLost() !== undefined) return;
    this.#verifyWanted = true;
    void this.#drain();
  }

  get pipeline(): Pipeline {
    return this.#pipeline;
  }

  /**
   * The first render: every secret fetched (batched) and every file rendered,
   * retried until it succeeds or stop(). Each attempt re-checks what it holds
   * and fetches only what is missing or moved; a render error is retried like a
   * fetch error (the secret may be fixed meanwhile). Resolves false when
   * stopped before succeeding.
   */
  firstRender(): Promise<boolean> {
    this.#firstRun ??= this.#firstRenderLoop();
    return this.#firstRun;
  }

  async #firstRenderLoop(): Promise<boolean> {
    const logged = new Set<string>();
    const reportOnce = (e: { message: string }, fields: Record<string, unknown>): void => {
      if (logged.has(e.message)) return;
      logged.add(e.message);
      this.#log.error(fields, e.message);
    };
    const result = await firstRender({
      pipeline: () => this.#pipeline,
      refresh: (pipeline, signal) => this.#refreshAll(pipeline, signal, reportOnce),
      signal: this.#stop.signal,
      // A render error is retried like a fetch error (the secret may be fixed meanwhile), a failed write too.
      retry: () => true,
      onRetry: (failure, _attempt, waitMs) => {
        let problem: string;
        if (failure.kind === 'fetch') {
          for (const e of failure.failures.values()) reportOnce(e, { secret: e.secret, code: e.code, transient: e.transient });
          problem = `${failure.failures.size} secret(s) not available yet`;
          this.#notReady = `waiting for ${listed([...failure.failures.values()].map((e) => `secret "${e.secret}" (${e.code})`))}`;
        } else if (failure.kind === 'render') {
          for (const e of failure.errors) reportOnce(e, { file: e.file });
          problem = `${failure.errors.length} file(s) could not be rendered`;
          this.#notReady = `cannot render ${listed(failure.errors.map((e) => `file "${e.file}"`))} (the log says why)`;
        } else {
          problem = failure.error.message;
          this.#notReady = `the write failed: ${failure.error.message}`;
        }
        this.#log.warn({ retryInMs: waitMs }, `first render not complete: ${problem}; retrying`);
      },
      firstDelayMs: FIRST_RETRY_MS,
      maxDelayMs: (pipeline) => Math.max(1000, pipeline.config.refresh.intervalMs),
      wait: (ms, signal) => this.#pause(ms, signal),
    });
    if (!result.ok) return false;
    const { config } = this.#pipeline;
    this.#ready = true;
    this.#metrics.setReady(true);
    this.#log.info({ outputDir: config.outputDir, files: config.files.length, secrets: config.secrets.length }, 'first render complete; ready');
    this.#scheduler.setSecrets(config.secrets);
    this.#armVerify();
    return true;
  }

  /** Wait before the next first-render attempt; wake() or stop() cut it short. */
  #pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  /**
   * Bring every value of `pipeline` up to date before a first render: fetch the
   * secrets it has no value for (batched), re-check the ones it has (a version
   * check; a fetch only where the version moved). A source read as a whole is
   * read once. Returns the secrets still without a value; a failed re-check of a
   * held value is only reported (the value held is still the last good one).
   */
  async #refreshAll(
    pipeline: Pipeline,
    signal: AbortSignal,
    report: (e: SourceError, fields: Record<string, unknown>) => void,
  ): Promise<Map<string, SourceError>> {
    const specs = pipeline.config.secrets;
    const failures = new Map<string, SourceError>();
    const source = pipeline.source;
    if (source.readSnapshot) {
      const snap = await source.readSnapshot(specs, signal);
      this.#snapshots.apply(pipeline, snap, true);
      for (const spec of specs) {
        const r = snap.results.get(spec.name);
        if (r instanceof Error) {
          this.#metrics.secretFetched(spec.name, 'error');
          if (!pipeline.values.has(spec.name)) failures.set(spec.name, r);
        }
      }
      return failures;
    }
    const missing = specs.filter((s) => !pipeline.values.has(s.name));
    // Pinned versions cannot change and `refreshInterval: never` secrets must not: held once, never re-checked.
    const held = specs.filter((s) => pipeline.values.has(s.name) && !s.versionId && !s.fetchOnce);
    for (const [name, e] of await pipeline.load(missing, signal)) failures.set(name, e);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < held.length && !signal.aborted) {
        const spec = held[next++] as SecretSpec;
        try {
          await this.#checkOne(pipeline, spec, signal);
          this.#metrics.secretChecked(spec.name, 'success');
        } catch (err) {
          const e = err as SourceError;
          this.#metrics.secretChecked(spec.name, 'error');
          if (!signal.aborted) report(e, { secret: e.secret, code: e.code, transient: e.transient });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(FIRST_CHECK_CONCURRENCY, held.length) }, worker));
    return failures;
  }

  /** One scheduled check: the version check, and a commit requested when a new value was accepted. */
  async #check(spec: SecretSpec, signal: AbortSignal): Promise<CheckOutcome> {
    const pipeline = this.#pipeline;
    if (pipeline.source.readSnapshot) return this.#checkSnapshot(pipeline, spec, signal);
    const outcome = await this.#checkOne(pipeline, spec, signal);
    if (outcome.changed) this.requestCommit();
    return outcome;
  }

  /**
   * A group of scheduled checks: one describeMany for all, then a fetch of each
   * one whose version moved; one commit requested for every new value accepted.
   * Each local name maps to its outcome or its SourceError.
   */
  async #checkMany(specs: readonly SecretSpec[], signal: AbortSignal): Promise<Map<string, CheckOutcome | SourceError>> {
    const pipeline = this.#pipeline;
    const out = new Map<string, CheckOutcome | SourceError>();
    if (!pipeline.source.describeMany) {
      // The source changed with a reload since the group was formed: one check each.
      await pLimit(GROUP_FETCH_CONCURRENCY).map(specs, async (spec) => {
        out.set(spec.name, await this.#checkOne(pipeline, spec, signal).catch((err: unknown) => err as SourceError));
      });
    } else {
      const described = await pipeline.source.describeMany(specs, signal);
      await pLimit(GROUP_FETCH_CONCURRENCY).map(specs, async (spec) => {
        const metadata = described.get(spec.name);
        if (metadata === undefined) return; // the scheduler retries it on its own
        if (metadata instanceof Error) out.set(spec.name, metadata);
        else out.set(spec.name, await this.#described(pipeline, spec, metadata, signal).catch((err: unknown) => err as SourceError));
      });
    }
    if ([...out.values()].some((r) => !(r instanceof Error) && r.changed)) this.requestCommit();
    return out;
  }

  /** DescribeSecret; GetSecretValue only when the version carrying the stage moved. Accepts a new value, commits nothing. */
  async #checkOne(pipeline: Pipeline, spec: SecretSpec, signal: AbortSignal): Promise<CheckOutcome> {
    return this.#described(pipeline, spec, await pipeline.source.describe(spec, signal), signal);
  }

  /** After the metadata of one secret arrived: fetch it only when the version carrying the stage moved. */
  async #described(pipeline: Pipeline, spec: SecretSpec, metadata: SecretMetadata, signal: AbortSignal): Promise<CheckOutcome> {
    this.#deletions.note(spec, metadata);
    const current = pipeline.values.get(spec.name);
    if (!versionMoved(current, metadata.versionIdForStage)) return { metadata, changed: false };
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
    const changed = pipeline.accept(spec.name, value);
    if (changed) {
      this.#log.info({ secret: spec.name, from: current?.versionId, to: value.versionId }, 'new secret version');
    }
    return { metadata, changed };
  }

  /**
   * A check on a source read as a whole: one read (shared with the checks running
   * at the same time), and a change in it is accepted for every secret at once.
   */
  async #checkSnapshot(pipeline: Pipeline, spec: SecretSpec, signal: AbortSignal): Promise<CheckOutcome> {
    const snap = await pipeline.source.readSnapshot!(pipeline.config.secrets, signal);
    const mine = snap.results.get(spec.name);
    if (mine instanceof Error) throw mine;
    const metadata = snapshotMetadata(spec, mine);
    if (this.#pipeline !== pipeline) return { metadata, changed: false };
    const changed = this.#snapshots.apply(pipeline, snap, false);
    if (changed.length > 0) this.requestCommit();
    return { metadata, changed: changed.includes(spec.name) };
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
      while ((this.#dirty || this.#verifyWanted) && !this.#stop.signal.aborted) {
        if (this.#dirty) {
          // A commit writes (and so verifies) everything: the verify wanted is done by it.
          this.#dirty = false;
          this.#verifyWanted = false;
          await this.#commitOnce();
        } else {
          this.#verifyWanted = false;
          await this.#verifyOnce();
        }
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
      this.#writeFailed(err);
    }
  }

  /** A commit or verify round failed: the previous generation is intact; log it and retry the write on its own timer. */
  #writeFailed(err: unknown): void {
    this.#lastWriteError = err as Error;
    this.#metrics.filesWritten('error');
    // The new values are already the ones in use: no later check will see a change,
    // so retry the write itself (ENOSPC clears, EACCES gets fixed).
    const retryMs = Math.min(5000, this.#pipeline.config.refresh.intervalMs);
    this.#log.error({ code: (err as { code?: string }).code, retryInMs: retryMs }, `${(err as Error).message}`);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.requestCommit(), retryMs);
    this.#retryTimer.unref();
  }

  /** A verify round: restore the live generation where the volume differs from it. */
  async #verifyOnce(): Promise<void> {
    if (this.#lockLost() !== undefined) return;
    try {
      const write = await this.#pipeline.verify();
      const changed = write?.changed ?? [];
      if (changed.length === 0) return;
      this.#metrics.volumeRepaired();
      this.#log.warn({ outputDir: this.#pipeline.config.outputDir, changed, ...(write?.generation ? { generation: write.generation } : {}) }, 'the volume differed from the files last written (removed, changed or chmod-ed by someone else); restored them');
      if (!this.#stop.signal.aborted) {
        await this.#notifier.notify(changed, {
          outputDir: this.#pipeline.config.outputDir,
          ...(write?.generation ? { generation: write.generation } : {}),
        });
      }
    } catch (err) {
      this.#writeFailed(err);
    }
  }

  /** Check every secret now (the file source changed); before the first generation, retry the first render now. */
  checkAllNow(): void {
    if (this.#ready) this.#scheduler.checkAllNow();
    else this.#wake?.();
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
      if (was && v && sameSource(was, spec)) {
        next.accept(spec.name, v);
      } else {
        toFetch.push(spec);
      }
    }
    // A file the new config still writes keeps its last good content when its render fails, as it did before the reload.
    next.inheritLastGood(old);
    if (!this.#ready) {
      // No generation yet: the first render's next attempt (now) fetches and re-checks on the new config.
      await this.#swap(next, notifier);
      this.#wake?.();
      return;
    }
    if (next.source.readSnapshot) {
      // One read for every secret: carried-over values would be from an older version of the document.
      const snap = await next.source.readSnapshot(next.config.secrets, this.#stop.signal);
      this.#snapshots.apply(next, snap, true);
      for (const [name, r] of snap.results) if (r instanceof Error && !next.values.has(name)) this.#log.error({ secret: r.secret, code: r.code }, r.message);
    } else {
      const failures = await next.load(toFetch, this.#stop.signal);
      for (const e of failures.values()) this.#log.error({ secret: e.secret, code: e.code }, e.message);
    }
    await this.#committing;
    await this.#swap(next, notifier);
    this.#scheduler.setSecrets(next.config.secrets);
    this.#dirty = true;
    await this.#drain();
    return this.#lastWriteError;
  }

  /** Put the new pipeline and notifier in place (the old notifier's pending work is cut short) and the new refresh settings. */
  async #swap(next: Pipeline, notifier: Notifier): Promise<void> {
    const oldNotifier = this.#notifier;
    this.#pipeline = next;
    this.#notifier = notifier;
    await oldNotifier.stop();
    if (!this.#coalesceFixed) this.#coalesceMs = Math.min(500, next.config.refresh.intervalMs / 4);
    this.#scheduler.setRefresh(next.config.refresh);
    if (this.#ready) this.#armVerify();
  }

  /** Stop checking, let the write in flight finish, cancel pending notifications. */
  async stop(): Promise<void> {
    this.#stop.abort(new Error('shutting down'));
    clearTimeout(this.#commitTimer);
    clearTimeout(this.#retryTimer);
    clearInterval(this.#verifyTimer);
    this.#unsubscribeLock();
    await this.#scheduler.stop();
    await this.#firstRun?.catch(() => false);
    await this.#committing;
    await this.#notifier.stop();
  }
}

/** "a, b and 3 more": at most 5 names, so a /readyz body stays short with 1,000 secrets. */
function listed(items: readonly string[]): string {
  const shown = items.slice(0, 5).join(', ');
  return items.length > 5 ? `${shown} and ${items.length - 5} more` : shown;
}
