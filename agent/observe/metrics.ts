// The agent's Prometheus metrics: one registry per agent (never prom-client's
// global one, so tests and embedders can run several agents in one process).
//
// Rules every method follows:
// - Label values are configuration names (secret local names, file paths
//   relative to outputDir, notify target names) or fixed words; a secret value,
//   an error message or anything else read from AWS never becomes a label.
// - `result` labels take a small fixed set of words; an unknown word (a caller
//   bug) is counted as `error` (or `client_error` for AWS requests) so the
//   number of series stays bounded.
// - Label sets are created at 0 when a secret, file or target is declared, so
//   `rate()` and `increase()` work from the first scrape after start-up.
// Names, types and label words: observe/metric-names.ts.
import { createHistogram, performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  AWS_DURATION_BUCKETS,
  AWS_RESULTS,
  DROPPED_DEFAULT_METRICS,
  OUTCOMES,
  WRITE_RESULTS,
  type AgentMetricsOptions,
  type AwsResult,
  type DeclaredConfig,
  type DeclaredSecret,
  type Outcome,
  type WriteResult,
} from './metric-names.ts';
// Re-exported: callers import the metrics and their vocabulary from one module.
export * from './metric-names.ts';

/**
 * Event-loop lag is sampled every LAG_SAMPLE_MS: every second, not prom-client's
 * default 10 ms, which was ~80% of an idle agent's CPU (29.6 -> 5.6 CPU s/hour,
 * 96 -> 1.4 wakeups/s; `npm run bench -- --only=idle`).
 */
export const LAG_SAMPLE_MS = 1000;
/** prom-client's own monitor, whose gauges are dropped: an interval that never comes (~24.8 days, the largest a timer takes). */
const IDLE_MONITOR_MS = 2 ** 31 - 1;
const EVENT_LOOP_LAG_METRICS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map((s) => `nodejs_eventloop_lag_${s}_seconds`);

/**
 * nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds over the
 * samples since the previous scrape, as true lag: how late a timer repeating
 * every LAG_SAMPLE_MS fires (on time: ~0; held up by a blocked loop: the
 * block). Not monitorEventLoopDelay: it records the time between two ticks, the
 * interval included, and its reset() (prom-client's, at every scrape) also
 * forgets the previous tick, so the sample spanning a scrape, a block that
 * came right after one included, is lost. Here the previous tick survives the
 * reset. No sample since the last scrape: 0.
 */
function eventLoopLag(registry: Registry): void {
  const histogram = createHistogram();
  let previous = performance.now();
  setInterval(() => {
    const now = performance.now();
    // A histogram records integers >= 1: nanoseconds, and 1 for "on time".
    histogram.record(Math.max(1, Math.round((now - previous - LAG_SAMPLE_MS) * 1e6)));
    previous = now;
  }, LAG_SAMPLE_MS).unref();
  const seconds = (ns: number): number => (ns <= 1 ? 0 : ns / 1e9);
  const gauges = new Map<string, Gauge>();
  const collect = (): void => {
    const none = histogram.count === 0;
    const values: Record<string, number> = {
      min: none ? 0 : seconds(histogram.min),
      max: none ? 0 : seconds(histogram.max),
      mean: none ? 0 : seconds(histogram.mean),
      stddev: none ? 0 : histogram.stddev / 1e9,
      p50: none ? 0 : seconds(histogram.percentile(50)),
      p90: none ? 0 : seconds(histogram.percentile(90)),
      p99: none ? 0 : seconds(histogram.percentile(99)),
    };
    for (const [stat, gauge] of gauges) gauge.set(values[stat]!);
    histogram.reset();
  };
  const help: Record<string, string> = {
    min: 'The smallest event-loop lag (how late a timer due every second ran) since the last scrape.',
    max: 'The largest event-loop lag (how late a timer due every second ran) since the last scrape.',
    mean: 'The mean event-loop lag (how late a timer due every second ran) since the last scrape.',
    stddev: 'The standard deviation of the event-loop lag (how late a timer due every second ran) since the last scrape.',
    p50: 'The 50th percentile of the event-loop lag (how late a timer due every second ran) since the last scrape.',
    p90: 'The 90th percentile of the event-loop lag (how late a timer due every second ran) since the last scrape.',
    p99: 'The 99th percentile of the event-loop lag (how late a timer due every second ran) since the last scrape.',
  };
  for (const [i, stat] of Object.keys(help).entries()) {
    // The first gauge's collect sets them all (prom-client collects metrics in registration order).
    gauges.set(stat, new Gauge({ name: `nodejs_eventloop_lag_${stat}_seconds`, help: help[stat]!, registers: [registry], ...(i === 0 ? { collect } : {}) }));
  }
}

const OPERATION_RE = /^[A-Za-z][A-Za-z0-9]{0,63}$/;

function pick<T extends string>(value: string, allowed: readonly T[], fallback: T): T {
  return (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

function seconds(date: Date): number | undefined {
  const ms = date.getTime();
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

export class AgentMetrics {
  /** The registry holding every metric of this agent (not prom-client's global registry). */
  readonly registry: Registry;

  readonly #checks: Counter<'secret' | 'result'>;
  readonly #fetches: Counter<'secret' | 'result'>;
  readonly #lastSuccess: Gauge<'secret'>;
  readonly #versionChanges: Counter<'secret'>;
  readonly #failovers: Counter<'secret'>;
  readonly #versionCreated: Gauge<'secret'>;
  readonly #refreshInterval: Gauge<'secret'>;
  readonly #deletionScheduled: Gauge<'secret'>;
  readonly #renders: Counter<'file' | 'result'>;
  readonly #writes: Counter<'result'>;
  readonly #generation: Gauge;
  readonly #targetGeneration: Gauge<'output_target'>;
  readonly #notify: Counter<'target' | 'result'>;
  readonly #notifyFailing: Gauge<'target'>;
  readonly #awsRequests: Counter<'operation' | 'result'>;
  readonly #awsDuration: Histogram<'operation'>;
  readonly #awsRetries: Counter<'operation'>;
  readonly #credentialsExpiration: Gauge;
  readonly #configReloads: Counter<'result'>;
  readonly #volumeRepairs: Counter;
  readonly #volumeLockLost: Counter;
  readonly #ready: Gauge;

  readonly #secrets = new Set<string>();
  readonly #files = new Set<string>();
  readonly #targets = new Set<string>();
  readonly #outputTargets = new Set<string>();

  constructor(options: AgentMetricsOptions) {
    this.registry = new Registry();
    const registers = [this.registry];
    if (options.processMetrics ?? true) {
      // prom-client's nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds report
      // monitorEventLoopDelay's samples as they are: the time between two ticks of its
      // timer, the 1 s sampling interval included, so an idle agent read ~1 s. They are
      // replaced by the same names reporting true lag (eventLoopLag below); prom-client's
      // own monitor is given an interval so long that it never ticks.
      // nodejs_eventloop_lag_seconds (a setImmediate at scrape time) was true lag already: kept.
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: IDLE_MONITOR_MS });
      // Gauges named *_total break the exposition conventions (`promtool check metrics`
      // rejects them) and only repeat the sum of their per-type siblings
      // nodejs_active_handles{type}, nodejs_active_requests{type}, nodejs_active_resources{type}.
      for (const name of [...DROPPED_DEFAULT_METRICS, ...EVENT_LOOP_LAG_METRICS]) this.registry.removeSingleMetric(name);
      eventLoopLag(this.registry);
    }

    this.#checks = new Counter({
      name: 'secrets_agent_secret_checks_total',
      help: 'Checks of a secret for a new version (DescribeSecret), by local secret name and result (success|error).',
      labelNames: ['secret', 'result'],
      registers,
    });
    this.#fetches = new Counter({
      name: 'secrets_agent_secret_fetches_total',
      help: 'Fetches of a secret value (GetSecretValue or one entry of BatchGetSecretValue), by local secret name and result (success|error).',
      labelNames: ['secret', 'result'],
      registers,
    });
    this.#lastSuccess = new Gauge({
      name: 'secrets_agent_secret_last_success_timestamp_seconds',
      help: 'Unix time of the last successful check or fetch of a secret: the value in use was current at that time.',
      labelNames: ['secret'],
      registers,
    });
    this.#versionChanges = new Counter({
      name: 'secrets_agent_secret_version_changes_total',
      help: 'Times a new version of a secret was picked up after the first load (rotations and manual updates).',
      labelNames: ['secret'],
      registers,
    });
    this.#versionCreated = new Gauge({
      name: 'secrets_agent_secret_version_created_timestamp_seconds',
      help: 'Unix time the secret version in use was created in Secrets Manager (its age is time() minus this).',
      labelNames: ['secret'],
      registers,
    });
    this.#refreshInterval = new Gauge({
      name: 'secrets_agent_secret_refresh_interval_seconds',
      help: 'Configured check interval of a secret in seconds; 0 for a pinned versionId (never refreshed).',
      labelNames: ['secret'],
      registers,
    });
    this.#deletionScheduled = new Gauge({
      name: 'secrets_agent_secret_deletion_scheduled',
      help: '1 while Secrets Manager reports the secret scheduled for deletion (DescribeSecret DeletedDate): the agent serves its last value, and the secret is gone for good after the recovery window unless restored; else 0.',
      labelNames: ['secret'],
      registers,
    });
    this.#failovers = new Counter({
      name: 'secrets_agent_failover_total',
      help: 'Reads of a secret (checks and fetches) answered by source.failoverRegion because the primary region had an outage (server error, timeout, network).',
      labelNames: ['secret'],
      registers,
    });
    this.#renders = new Counter({
      name: 'secrets_agent_file_renders_total',
      help: 'Renders of an output file, by path relative to outputDir and result (success|error).',
      labelNames: ['file', 'result'],
      registers,
    });
    this.#writes = new Counter({
      name: 'secrets_agent_files_writes_total',
      help: 'Writes of the output volume by result: success (new generation swapped in), unchanged (nothing to write), error (previous files kept).',
      labelNames: ['result'],
      registers,
    });
    this.#generation = new Gauge({
      name: 'secrets_agent_files_generation_timestamp_seconds',
      help: 'Unix time the files currently on the volume were written; 0 before the first write.',
      registers,
    });
    this.#targetGeneration = new Gauge({
      name: 'secrets_agent_files_target_generation_timestamp_seconds',
      help: 'With targets: Unix time the files now in a target (a subdirectory of outputDir written as its own root) were written, by target; 0 before its first write.',
      labelNames: ['output_target'],
      registers,
    });
    this.#notify = new Counter({
      name: 'secrets_agent_notify_total',
      help: 'Notifications of the application after a change, by target name and result (success|error).',
      labelNames: ['target', 'result'],
      registers,
    });
    this.#notifyFailing = new Gauge({
      name: 'secrets_agent_notify_failing',
      help: '1 when the most recent notification of a target failed (the application may still use old values), else 0.',
      labelNames: ['target'],
      registers,
    });
    this.#awsRequests = new Counter({
      name: 'secrets_agent_aws_requests_total',
      help: 'AWS SDK calls (each counted once, after the SDK retries) by operation and result category.',
      labelNames: ['operation', 'result'],
      registers,
    });
    this.#awsDuration = new Histogram({
      name: 'secrets_agent_aws_request_duration_seconds',
      help: 'Duration of AWS SDK calls including SDK retries, backoff, signing and credential resolution, by operation.',
      labelNames: ['operation'],
      buckets: [...AWS_DURATION_BUCKETS],
      registers,
    });
    this.#awsRetries = new Counter({
      name: 'secrets_agent_aws_retries_total',
      help: 'Retries the AWS SDK made inside calls (attempts beyond the first), by operation.',
      labelNames: ['operation'],
      registers,
    });
    this.#credentialsExpiration = new Gauge({
      name: 'secrets_agent_credentials_expiration_timestamp_seconds',
      help: 'Unix time the AWS credentials in use expire; 0 when unknown or when they do not expire.',
      registers,
    });
    this.#configReloads = new Counter({
      name: 'secrets_agent_config_reloads_total',
      help: 'Configuration reloads by result (success|error; on error the previous configuration stays in use).',
      labelNames: ['result'],
      registers,
    });
    this.#volumeRepairs = new Counter({
      name: 'secrets_agent_volume_repairs_total',
      help: 'Verify rounds that found the volume differing from the live generation (a file removed, chmod-ed or changed, a link removed) and restored it.',
      registers,
    });
    this.#volumeLockLost = new Counter({
      name: 'secrets_agent_volume_lock_lost_total',
      help: 'Times the volume lock (..lock) was found not to be this agent\'s any more (removed, replaced or taken by another agent).',
      registers,
    });
    this.#ready = new Gauge({
      name: 'secrets_agent_ready',
      help: '1 after the first complete render (what /readyz reports), else 0.',
      registers,
    });
    const buildInfo = new Gauge({
      name: 'secrets_agent_build_info',
      help: 'Always 1; labels carry the agent version and the Node.js version.',
      labelNames: ['version', 'node'],
      registers,
    });
    buildInfo.set({ version: options.version, node: process.version }, 1);

    for (const result of WRITE_RESULTS) this.#writes.inc({ result }, 0);
    for (const result of OUTCOMES) this.#configReloads.inc({ result }, 0);
  }

  /** The Content-Type of `metrics()` (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** One scrape in the Prometheus text format. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  // --- declarations (start-up and config reload) --------------------------------

  /**
   * Declares the configured secrets, files and notify targets: creates their
   * series at 0 and forgets every secret, file and target declared before but
   * absent now. Call at start-up and after each successful config reload.
   */
  declareConfig(config: DeclaredConfig): void {
    const secrets = config.secrets.map((s) => ({
      name: s.name,
      intervalMs: s.versionId !== undefined || s.fetchOnce ? 0 : (s.refreshIntervalMs ?? config.refresh.intervalMs),
    }));
    const keep = new Set(secrets.map((s) => s.name));
    for (const name of [...this.#secrets]) if (!keep.has(name)) this.forgetSecret(name);
    this.declareSecrets(secrets);

    const files = new Set(config.files.map((f) => f.path));
    for (const path of [...this.#files]) if (!files.has(path)) this.forgetFile(path);
    this.declareFiles([...files]);

    const outputTargets = new Set(config.targets ?? []);
    for (const name of [...this.#outputTargets]) {
      if (outputTargets.has(name)) continue;
      this.#outputTargets.delete(name);
      this.#targetGeneration.remove({ output_target: name });
    }
    for (const name of outputTargets) {
      if (this.#outputTargets.has(name)) continue;
      this.#outputTargets.add(name);
      this.#targetGeneration.set({ output_target: name }, 0);
    }

    const targets = new Set(config.notify.map((t) => t.name));
    for (const name of [...this.#targets]) if (!targets.has(name)) this.forgetNotifyTarget(name);
    this.declareNotifyTargets([...targets]);
  }

  /** Creates each secret's counters at 0 and sets its refresh interval (0 = pinned, never refreshed). */
  declareSecrets(secrets: readonly DeclaredSecret[]): void {
    for (const { name, intervalMs } of secrets) {
      this.#ensureSecret(name);
      this.#refreshInterval.set({ secret: name }, Math.max(0, intervalMs) / 1000);
    }
  }

  /** Creates each file's render counters at 0. `paths` are relative to outputDir. */
  declareFiles(paths: readonly string[]): void {
    for (const file of paths) {
      this.#files.add(file);
      for (const result of OUTCOMES) this.#renders.inc({ file, result }, 0);
    }
  }

  /** Creates each notify target's counters at 0. */
  declareNotifyTargets(names: readonly string[]): void {
    for (const target of names) {
      if (this.#targets.has(target)) continue; // a reload must not reset notify_failing
      this.#targets.add(target);
      for (const result of OUTCOMES) this.#notify.inc({ target, result }, 0);
      this.#notifyFailing.set({ target }, 0);
    }
  }

  /** Removes every series of a secret (it was removed from the configuration). */
  forgetSecret(name: string): void {
    this.#secrets.delete(name);
    for (const result of OUTCOMES) {
      this.#checks.remove({ secret: name, result });
      this.#fetches.remove({ secret: name, result });
    }
    for (const gauge of [this.#lastSuccess, this.#versionCreated, this.#refreshInterval, this.#deletionScheduled]) gauge.remove({ secret: name });
    this.#versionChanges.remove({ secret: name });
    this.#failovers.remove({ secret: name });
  }

  /** Removes every series of an output file (it was removed from the configuration). */
  forgetFile(path: string): void {
    this.#files.delete(path);
    for (const result of OUTCOMES) this.#renders.remove({ file: path, result });
  }

  /** Removes every series of a notify target (it was removed from the configuration). */
  forgetNotifyTarget(name: string): void {
    this.#targets.delete(name);
    for (const result of OUTCOMES) this.#notify.remove({ target: name, result });
    this.#notifyFailing.remove({ target: name });
  }

  // --- events -------------------------------------------------------------------

  /**
   * One check of a secret for a new version. `success` also marks the secret
   * fresh (`last_success_timestamp_seconds`), whether or not the version changed:
   * a change is reported with `versionChanged`.
   */
  secretChecked(secret: string, result: Outcome, at: Date = new Date()): void {
    this.#ensureSecret(secret);
    const r = pick(result, OUTCOMES, 'error');
    this.#checks.inc({ secret, result: r });
    if (r === 'success') this.#markFresh(secret, at);
  }

  /** One fetch of a secret value; `success` also marks the secret fresh. */
  secretFetched(secret: string, result: Outcome, at: Date = new Date()): void {
    this.#ensureSecret(secret);
    const r = pick(result, OUTCOMES, 'error');
    this.#fetches.inc({ secret, result: r });
    if (r === 'success') this.#markFresh(secret, at);
  }

  /**
   * The first version of a secret was loaded (start-up, or a secret added by a
   * config reload): sets its creation time, counts no change.
   */
  versionCreated(secret: string, createdDate?: Date): void {
    this.#ensureSecret(secret);
    this.#setCreated(secret, createdDate);
  }

  /** A new version of a secret was picked up (rotation or update): counts the change and sets its creation time. */
  versionChanged(secret: string, createdDate?: Date): void {
    this.#ensureSecret(secret);
    this.#versionChanges.inc({ secret });
    this.#setCreated(secret, createdDate);
  }

  /** What the last check said of a secret's deletion: scheduled (DeletedDate set) or not. */
  secretDeletionScheduled(secret: string, scheduled: boolean): void {
    this.#ensureSecret(secret);
    this.#deletionScheduled.set({ secret }, scheduled ? 1 : 0);
  }

  /** One read (check or fetch) of a secret was answered by the failover region (the primary had an outage). */
  secretFailedOver(secret: string): void {
    this.#ensureSecret(secret);
    this.#failovers.inc({ secret });
  }

  /** One render of an output file (path relative to outputDir). */
  fileRendered(file: string, result: Outcome): void {
    if (!this.#files.has(file)) this.declareFiles([file]);
    this.#renders.inc({ file, result: pick(result, OUTCOMES, 'error') });
  }

  /** A new generation was swapped in at `date`: counts a successful write and sets the generation time. */
  generationWritten(date: Date = new Date()): void {
    this.#writes.inc({ result: 'success' });
    const s = seconds(date);
    if (s !== undefined) this.#generation.set(s);
  }

  /** With targets: the files of one target (`output_target`) were written at `date` (it changed; generationWritten counts the write). */
  targetWritten(target: string, date: Date = new Date()): void {
    this.#outputTargets.add(target);
    const s = seconds(date);
    if (s !== undefined) this.#targetGeneration.set({ output_target: target }, s);
  }

  /**
   * A write that swapped nothing in: `unchanged` (nothing differed) or `error`
   * (previous files kept). A successful write is `generationWritten`.
   */
  filesWritten(result: WriteResult, date?: Date): void {
    if (result === 'success') {
      this.generationWritten(date);
      return;
    }
    this.#writes.inc({ result: pick(result, WRITE_RESULTS, 'error') });
  }

  /** One notification of a target (by its configured name). */
  notified(target: string, result: Outcome): void {
    if (!this.#targets.has(target)) this.declareNotifyTargets([target]);
    const r = pick(result, OUTCOMES, 'error');
    this.#notify.inc({ target, result: r });
    this.#notifyFailing.set({ target }, r === 'success' ? 0 : 1);
  }

  /**
   * One AWS SDK call, measured once around the SDK's retries.
   * @param operation the command name without `Command` (e.g. `GetSecretValue`); anything
   *   that does not look like one is counted as `other`.
   * @param attempts attempts the SDK made (from `$metadata.attempts`); retries = attempts - 1.
   */
  awsRequest(operation: string, result: AwsResult, seconds: number, attempts = 1): void {
    const op = OPERATION_RE.test(operation) ? operation : 'other';
    this.#awsRequests.inc({ operation: op, result: pick(result, AWS_RESULTS, 'client_error') });
    if (Number.isFinite(seconds) && seconds >= 0) this.#awsDuration.observe({ operation: op }, seconds);
    if (Number.isInteger(attempts) && attempts > 1) this.#awsRetries.inc({ operation: op }, attempts - 1);
  }

  /** The credentials in use expire at `date` (undefined: they do not expire, e.g. static keys). */
  credentialsExpire(date: Date | undefined): void {
    const s = date === undefined ? undefined : seconds(date);
    this.#credentialsExpiration.set(s ?? 0);
  }

  /** One configuration reload. */
  configReloaded(result: Outcome): void {
    this.#configReloads.inc({ result: pick(result, OUTCOMES, 'error') });
  }

  /** A verify round restored the volume to the live generation. */
  volumeRepaired(): void {
    this.#volumeRepairs.inc();
  }

  /** The volume lock was found removed, replaced or taken. */
  volumeLockLost(): void {
    this.#volumeLockLost.inc();
  }

  /** Readiness as /readyz reports it. */
  setReady(ready: boolean): void {
    this.#ready.set(ready ? 1 : 0);
  }

  /**
   * A secret seen before any declaration still gets all its series at 0, so
   * sums like checks{error} + fetches{error} in the alert rules never miss a side.
   * Its refresh interval stays unknown (no series) until it is declared.
   */
  #ensureSecret(name: string): void {
    if (this.#secrets.has(name)) return;
    this.#secrets.add(name);
    for (const result of OUTCOMES) {
      this.#checks.inc({ secret: name, result }, 0);
      this.#fetches.inc({ secret: name, result }, 0);
    }
    this.#versionChanges.inc({ secret: name }, 0);
    this.#failovers.inc({ secret: name }, 0);
    this.#deletionScheduled.set({ secret: name }, 0);
  }

  #markFresh(secret: string, at: Date): void {
    const s = seconds(at);
    if (s !== undefined) this.#lastSuccess.set({ secret }, s);
  }

  #setCreated(secret: string, createdDate: Date | undefined): void {
    const s = createdDate === undefined ? undefined : seconds(createdDate);
    // An unknown creation time must not leave the previous version's time behind.
    if (s === undefined) this.#versionCreated.remove({ secret });
    else this.#versionCreated.set({ secret }, s);
  }
}
