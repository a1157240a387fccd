// `run`: the sidecar. Wiring only; the loop itself is refresh/runner.ts.
//
// Signals (README, Signals): SIGTERM/SIGINT: cancel pending splays and running
// notify commands (SIGTERM to their process group, SIGKILL after 2 s), stop
// checking, finish the write in flight, exit 0 within 5 s (a hard deadline
// guarantees it even if something hangs). SIGHUP: reload the config as an edit
// would, then check every secret now. SIGUSR1, SIGUSR2: ignored, one log line each.
import { loadConfig } from '../config/index.ts';
import { ConfigError, WriteError } from '../errors.ts';
import { EXIT_FAILED, EXIT_OK, reportConfigError, type GlobalOptions } from './common.ts';
import { createNotifier, killRunningCommands } from '../notify/index.ts';
import { AgentMetrics } from '../observe/metrics.ts';
import { startServer } from '../observe/server.ts';
import { Pipeline } from '../pipeline.ts';
import { Runner } from '../refresh/runner.ts';
import { compileFiles } from '../render/render.ts';
import { createWriter } from '../output/index.ts';
import { handleSignals } from '../signals.ts';
import { createSource } from '../source/index.ts';
import type { AgentConfig } from '../types.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretSource } from '../source/source.ts';
import { VERSION } from '../version.ts';

const SHUTDOWN_DEADLINE_MS = 4500;
const HEARTBEAT_MS = 5000;

/** Keys a live reload cannot change: they need a restart. */
function restartOnlyChange(a: AgentConfig, b: AgentConfig): string | undefined {
  if (JSON.stringify(a.source) !== JSON.stringify(b.source)) return 'source';
  if (a.outputDir !== b.outputDir) return 'outputDir';
  if (a.layout !== b.layout) return 'layout';
  if (a.server.listen !== b.server.listen) return 'server.listen';
  return undefined;
}

function templateFiles(config: AgentConfig): string[] {
  return config.files.flatMap((f) => (f.kind === 'templateFile' ? [f.templateFile] : []));
}

export async function run(opts: GlobalOptions): Promise<number> {
  const { log } = opts;
  // Signals first, so that one arriving during start-up already has its meaning (README, Signals).
  // Shutdown: the first SIGTERM/SIGINT starts it; the process exits 0 within the deadline whatever happens.
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping = false;
  // Aborted by the first SIGTERM/SIGINT: every notifier cancels its splays, exec children and requests
  // at once, so the notify in flight does not hold the shutdown up.
  const shutdown = new AbortController();
  // A notify command still running when the process exits, however it exits, is killed with its group.
  process.once('exit', killRunningCommands);
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const hard = setTimeout(() => {
      log.warn('shutdown deadline reached; exiting');
      process.exit(EXIT_OK);
    }, SHUTDOWN_DEADLINE_MS);
    hard.unref();
    shutdown.abort();
    resolveStopped();
  };
  // SIGHUP: reload the config and check every secret now (set once the watcher exists, below).
  let onHangup: () => void = () => log.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: the agent is still starting and reads its config now');
  handleSignals(log, {
    SIGTERM: onSignal,
    SIGINT: onSignal,
    SIGHUP: () => onHangup(),
  });

  const config = await loadConfig(opts.configPath);
  const compiled = await compileFiles(config);
  const metrics = new AgentMetrics({ version: VERSION });
  metrics.declareConfig(config);
  const source = await createSource(config, log, metrics);
  log.info(source.describeIdentity(), 'identity');

  const makePipeline = (c: AgentConfig, compiledFiles: typeof compiled, src: SecretSource) =>
    new Pipeline({ config: c, compiled: compiledFiles, source: src, writer: createWriter({ outputDir: c.outputDir, layout: c.layout, log }), log, metrics });
  // `skipped` (cut short by shutdown or reload) is not an outcome worth counting.
  const makeNotifier = (c: AgentConfig) =>
    createNotifier(c.notify, { log, signal: shutdown.signal, onResult: (target, result) => result !== 'skipped' && metrics.notified(target, result === 'success' ? 'success' : 'error') });

  // One agent per volume (README "Volume lock"): wait (bounded) for another holder, else exit 1.
  // Held until exit: outputDir cannot change without a restart.
  const pipeline = makePipeline(config, compiled, source);
  try {
    await pipeline.writer.lock();
  } catch (err) {
    source.close();
    if (!(err instanceof WriteError)) throw err;
    log.error({ code: err.code, outputDir: config.outputDir }, err.message);
    return EXIT_FAILED;
  }
  const runner = new Runner({ log, metrics, pipeline, notifier: makeNotifier(config) });

  // The heartbeat is the sidecar's one ref'd timer: every other timer is unref'd, so this
  // is what keeps the process alive until SIGTERM (cleared at shutdown), and /healthz
  // watches it to tell a turning event loop from a blocked one.
  let lastBeat = Date.now();
  const heartbeat = setInterval(() => (lastBeat = Date.now()), HEARTBEAT_MS);
  const server = config.server.listen
    ? await startServer({
        listen: config.server.listen,
        metrics,
        log,
        // Live while the event loop turns (a blocked loop misses heartbeats).
        health: () => ({
          live: Date.now() - lastBeat < 6 * HEARTBEAT_MS,
          ready: runner.ready,
          ...(runner.ready ? {} : { reason: 'the first render is not complete yet (see the agent log)' }),
        }),
      })
    : undefined;
  if (server) log.info({ address: `${server.address.host}:${server.address.port}` }, 'serving /metrics, /healthz, /readyz');

  // Hot reload: the config file and every template file. An invalid edit is
  // logged and rejected; the running config stays in force.
  const { watch } = await import('chokidar');
  const watched = () => [opts.configPath, ...templateFiles(runner.pipeline.config)];
  const watcher = watch(watched(), { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 25 } });
  let reloadTimer: NodeJS.Timeout | undefined;
  let reloading: Promise<void> = Promise.resolve();
  const reload = async (): Promise<void> => {
    const current = runner.pipeline.config;
    const before = watched();
    try {
      const next = await loadConfig(opts.configPath);
      const nextCompiled = await compileFiles(next);
      const fixed = restartOnlyChange(current, next);
      if (fixed) {
        metrics.configReloaded('error');
        log.error({ key: fixed }, `config change rejected: changing ${fixed} needs a restart of the agent; the running config stays in force`);
        return;
      }
      const writeFailed = await runner.reload(makePipeline(next, nextCompiled, runner.pipeline.source), makeNotifier(next));
      metrics.declareConfig(next);
      const now = [opts.configPath, ...templateFiles(next)];
      watcher.unwatch(before.filter((p) => !now.includes(p)));
      watcher.add(now);
      if (writeFailed) {
        metrics.configReloaded('error');
        log.error({ config: opts.configPath }, 'config reloaded, but writing its files failed (logged above): the previous files stay until the write, retried, succeeds');
        return;
      }
      metrics.configReloaded('success');
      log.info({ config: opts.configPath }, 'config reloaded');
    } catch (err) {
      metrics.configReloaded('error');
      if (err instanceof ConfigError) {
        reportConfigError(err, log);
        log.error('config change rejected; the running config stays in force');
      } else {
        log.error({ err: (err as Error).message }, 'config reload failed; the running config stays in force');
      }
    }
  };
  // Edits close together make one reload; a SIGHUP joins the same debounce and adds a check of every secret.
  let checkAllAfterReload = false;
  const scheduleReload = (checkAll = false): void => {
    checkAllAfterReload ||= checkAll;
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => {
      const all = checkAllAfterReload;
      checkAllAfterReload = false;
      reloading = reloading.then(reload).then(() => {
        if (all && !stopping) runner.checkAllNow();
      });
    }, 150);
    reloadTimer.unref();
  };
  watcher.on('all', () => scheduleReload());
  onHangup = () => {
    if (stopping) return;
    log.info({ signal: 'SIGHUP' }, 'SIGHUP received: reloading the config and checking every secret now');
    scheduleReload(true);
  };
  watcher.on('error', (err) => log.warn({ err: String(err) }, 'watching config files failed'));

  const unwatchSource = source.watch?.(() => runner.checkAllNow());

  const first = runner.firstRender().catch((err: unknown) => {
    logUnexpected(log, err);
    return false;
  });
  await Promise.race([stopped, first]);
  if (!stopping) await stopped;

  clearTimeout(reloadTimer);
  await Promise.allSettled([watcher.close(), unwatchSource?.(), reloading]);
  await runner.stop();
  source.close();
  await server?.close();
  clearInterval(heartbeat);
  log.info('stopped');
  return EXIT_OK;
}

function logUnexpected(log: Logger, err: unknown): void {
  log.error({ err: (err as Error)?.message ?? String(err) }, 'first render failed unexpectedly');
}
