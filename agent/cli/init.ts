// `init` and `render`: one full render, then exit. Never notifies.
//
// Transient failures (throttling, 5xx, timeouts, network, credentials not yet
// available) are retried with backoff until --timeout; terminal ones (no such
// secret, access denied) fail at once. Any failure means nothing is written:
// the previous generation stays exactly as it was.
//
// Signals (README, Signals): SIGTERM/SIGINT before the write starts end it at
// once with exit 1 and one log line (nothing written); during the write (atomic,
// short) they let it finish first. SIGHUP, SIGUSR1, SIGUSR2: ignored, one log line each.
import pRetry, { AbortError } from 'p-retry';
import { loadConfig, parseDuration } from '../config/index.ts';
import { CredentialsError, type SourceError, WriteError } from '../errors.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, type GlobalOptions } from '../main.ts';
import { Pipeline } from '../pipeline.ts';
import { compileFiles } from '../render/render.ts';
import { createWriter } from '../render/writer.ts';
import { handleSignals } from '../signals.ts';
import { createSource } from '../source/index.ts';
import type { SecretSpec } from '../types.ts';

/** SIGTERM during the write: how long it may still take before the process exits anyway. */
const WRITE_DEADLINE_MS = 4500;

class Pending extends Error {
  override readonly name = 'Pending';
}

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
  const loaded = await loadConfig(opts.configPath);
  const config = flags.outputDir ? { ...loaded, outputDir: (await import('node:path')).resolve(flags.outputDir) } : loaded;
  const compiled = await compileFiles(config);
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
  const writer = createWriter({ outputDir: config.outputDir, layout: config.layout, log });
  const pipeline = new Pipeline({ config, compiled, source, writer, log });

  const deadline = AbortSignal.timeout(timeoutMs);
  let pending: readonly SecretSpec[] = config.secrets;
  const terminal = new Map<string, SourceError>();
  let lastTransient = new Map<string, SourceError>();
  try {
    await pRetry(
      async () => {
        const failures = await pipeline.load(pending, deadline);
        lastTransient = new Map();
        for (const [name, err] of failures) (err.transient ? lastTransient : terminal).set(name, err);
        pending = pending.filter((s) => lastTransient.has(s.name));
        if (terminal.size > 0) throw new AbortError('terminal failure');
        if (pending.length > 0) throw new Pending(`${pending.length} secret(s) not yet available`);
      },
      {
        retries: Infinity,
        minTimeout: 200,
        maxTimeout: 10_000,
        factor: 2,
        randomize: true,
        maxRetryTime: timeoutMs,
        signal: deadline,
        // Not unref'd: while init waits to retry, this timer is what keeps the process alive.
        // (Unref'd, Node would exit 0 mid-retry with nothing written.)
        onFailedAttempt: ({ error, attemptNumber, retryDelay }) => {
          if (error instanceof Pending) {
            for (const e of lastTransient.values()) log.warn({ secret: e.secret, code: e.code, attempt: attemptNumber, retryInMs: Math.round(retryDelay) }, e.message);
          }
        },
      },
    );
  } catch {
    // Reported below: every failure gets its own line.
  } finally {
    source.close();
  }

  const failed = [...terminal.values(), ...lastTransient.values()];
  if (failed.length > 0) {
    for (const e of failed) log.error({ secret: e.secret, secretId: e.secretId, code: e.code }, e.message);
    if (lastTransient.size > 0 && deadline.aborted) log.error(`gave up after --timeout ${flags.timeout ?? '2m'}`);
    log.error({ failed: failed.length, outputDir: config.outputDir }, 'nothing written: the previous files are unchanged');
    return EXIT_FAILED;
  }

  try {
    writing = true;
    await writer.prepare();
    const outcome = await pipeline.commit('strict');
    if (outcome.renderErrors.length > 0) {
      for (const e of outcome.renderErrors) log.error({ file: e.file }, e.message);
      log.error({ failed: outcome.renderErrors.length, outputDir: config.outputDir }, 'nothing written: the previous files are unchanged');
      return EXIT_FAILED;
    }
    const changed = outcome.write?.changed ?? [];
    log.info(
      { outputDir: config.outputDir, generation: outcome.write?.generation, files: config.files.length, changed: changed.length },
      changed.length > 0 ? `wrote ${config.files.length} file(s) to ${config.outputDir}` : `files in ${config.outputDir} already up to date`,
    );
    return EXIT_OK;
  } catch (err) {
    if (err instanceof WriteError) {
      log.error({ code: err.code, outputDir: config.outputDir }, err.message);
      return EXIT_FAILED;
    }
    throw err;
  }
}
