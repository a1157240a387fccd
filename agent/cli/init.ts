// `init` and `render`: one full render, then exit. Never notifies.
//
// Transient failures (throttling, 5xx, timeouts, network, credentials not yet
// available) are retried with backoff until --timeout; terminal ones (no such
// secret, access denied) fail at once. Any failure means nothing is written:
// the previous generation stays exactly as it was. The loop is the one `run`
// uses for its first render (refresh/first-render.ts), with init's options.
//
// Signals (docs/commands.md, Signals): SIGTERM/SIGINT before the write starts end it at
// once with exit 1 and one log line (nothing written); during the write (atomic,
// short) they let it finish first. SIGHUP, SIGUSR1, SIGUSR2: ignored, one log line each.
import { loadConfig, MAX_DURATION_MS, MAX_DURATION_TEXT, parseDuration } from '../config/index.ts';
import { CredentialsError, WriteError } from '../errors.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, type GlobalOptions } from './common.ts';
import { Pipeline } from '../pipeline.ts';
import type { Logger } from '../observe/log.ts';
import { RepeatLimiter } from '../observe/repeats.ts';
import { firstRender, type FirstRenderResult } from '../refresh/first-render.ts';
import { compileFiles, prepareRender } from '../render/render.ts';
import { createWriter } from '../output/index.ts';
import { handleSignals } from '../signals.ts';
import { createSource } from '../source/index.ts';

/**
 * init's first render: the loop `run` uses too (refresh/first-render.ts), with
 * init's options. Transient fetch failures are retried until `timeoutMs` (or the
 * signal); terminal ones, render and write errors end it at once.
 */
export function initFirstRender(
  pipeline: Pipeline,
  o: { signal: AbortSignal; timeoutMs: number; log: Logger; beforeWrite?: () => void },
): Promise<FirstRenderResult> {
  const { log } = o;
  const repeats = new RepeatLimiter(log);
  return firstRender({
    pipeline: () => pipeline,
    // Everything held was fetched by this process: only the secrets without a value are asked for again.
    refresh: (p, signal) => p.load(p.config.secrets.filter((s) => !p.values.has(s.name)), signal),
    signal: o.signal,
    budgetMs: o.timeoutMs,
    retry: (f) => f.kind === 'fetch' && [...f.failures.values()].every((e) => e.transient),
    onRetry: (f, attempt, retryInMs) => {
      if (f.kind !== 'fetch') return;
      for (const e of f.failures.values()) repeats.warn(`${e.code}\0${e.detail}`, e.secret, { secret: e.secret, code: e.code, attempt, retryInMs }, e.message, e.detail);
    },
    firstDelayMs: 200,
    maxDelayMs: () => 10_000,
    ...(o.beforeWrite ? { beforeWrite: o.beforeWrite } : {}),
    // The default wait is not unref'd: while init waits to retry, its timer is what keeps the process alive.
    // (Unref'd, Node would exit 0 mid-retry with nothing written.)
  });
}

/** SIGTERM during the write: how long it may still take before the process exits anyway. */
const WRITE_DEADLINE_MS = 4500;

export async function init(opts: GlobalOptions, flags: { timeout?: string | undefined; outputDir?: string | undefined }): Promise<number> {
  const { log } = opts;
  let writing = false;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    if (!writing) {
      // Nothing to finish: fetching and rendering leave no trace on the volume.
      log.error({ signal }, `interrupted by ${signal}; nothing written: the previous files are unchanged`);
      process.exit(EXIT_FAILED);
    }
    log.warn({ signal }, `${signal} received while writing; finishing the write first (it is atomic)`);
    setTimeout(() => {
      log.error({ signal }, `interrupted by ${signal}; the write did not finish within ${WRITE_DEADLINE_MS / 1000}s; check the volume (each file is replaced atomically, never left half-written)`);
      process.exit(EXIT_FAILED);
    }, WRITE_DEADLINE_MS).unref();
  };
  handleSignals(log, { SIGTERM: onSignal, SIGINT: onSignal }, { SIGHUP: 'init reads its config once; SIGTERM or SIGINT stops it' });
  const timeoutMs = flags.timeout === undefined ? 120_000 : parseDuration(flags.timeout);
  if (timeoutMs === undefined) {
    process.stderr.write(`error: --timeout "${flags.timeout}" is not a duration (use e.g. "30s", "2m")\n`);
    return EXIT_USAGE;
  }
  // The same bound as every config duration: beyond it the timers overflow.
  if (timeoutMs > MAX_DURATION_MS) {
    process.stderr.write(`error: --timeout "${flags.timeout}" is too long (at most ${MAX_DURATION_TEXT}; e.g. "2m")\n`);
    return EXIT_USAGE;
  }
  const loaded = await loadConfig(opts.configPath);
  const config = flags.outputDir ? { ...loaded, outputDir: (await import('node:path')).resolve(flags.outputDir) } : loaded;
  const compiled = await compileFiles(config);
  // Template files render in a worker: start it now, while the values are fetched.
  prepareRender(compiled);
  let source;
  try {
    source = await createSource(config, log);
  } catch (err) {
    if (err instanceof CredentialsError) {
      log.error(err.message);
      return EXIT_FAILED;
    }
    throw err;
  }
  log.info(source.describeIdentity(), 'identity');
  const writer = createWriter({ outputDir: config.outputDir, layout: config.layout, targets: config.targets, log });
  const pipeline = new Pipeline({ config, compiled, source, writer, log });

  const deadline = AbortSignal.timeout(timeoutMs);
  let result: FirstRenderResult;
  try {
    result = await initFirstRender(pipeline, {
      signal: deadline,
      timeoutMs,
      log,
      beforeWrite: () => {
        writing = true;
      },
    });
  } finally {
    source.close();
  }

  if (result.ok) {
    const changed = result.write?.changed ?? [];
    log.info(
      { outputDir: config.outputDir, generation: result.write?.generation, files: config.files.length, changed: changed.length },
      changed.length > 0 ? `wrote ${config.files.length} file(s) to ${config.outputDir}` : `files in ${config.outputDir} already up to date`,
    );
    return EXIT_OK;
  }
  const { failure } = result;
  if (failure?.kind === 'render') {
    for (const e of failure.errors) log.error({ file: e.file }, e.message);
    log.error({ failed: failure.errors.length, outputDir: config.outputDir }, 'nothing written: the previous files are unchanged');
    return EXIT_FAILED;
  }
  if (failure?.kind === 'error') {
    if (failure.error instanceof WriteError) {
      log.error({ code: failure.error.code, outputDir: config.outputDir }, failure.error.message);
      return EXIT_FAILED;
    }
    throw failure.error;
  }
  // Secrets without a value: every failure gets its own line, terminal ones first.
  const failures = failure ? [...failure.failures.values()] : [];
  const transient = failures.filter((e) => e.transient);
  const failed = [...failures.filter((e) => !e.transient), ...transient];
  for (const e of failed) log.error({ secret: e.secret, secretId: e.secretId, code: e.code }, e.message);
  if (deadline.aborted && (transient.length > 0 || failed.length === 0)) log.error(`gave up after --timeout ${flags.timeout ?? '2m'}`);
  log.error({ failed: failed.length, outputDir: config.outputDir }, 'nothing written: the previous files are unchanged');
  return EXIT_FAILED;
}
