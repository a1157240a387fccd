// `run`: the sidecar. Wiring only; the loop itself is refresh/runner.ts, hot
// reload (config and template edits, SIGHUP) is refresh/reload.ts.
//
// Signals (docs/commands.md, Signals): SIGTERM/SIGINT: cancel pending splays and running
// notify commands (SIGTERM to their process group, SIGKILL after 2 s), stop
// checking, finish the write in flight, exit 0 within 5 s (a hard deadline
// guarantees it even if something hangs). SIGHUP: reload the config as an edit
// would, then check every secret now. SIGUSR1, SIGUSR2: ignored, one log line each.
import { loadConfig } from '../config/index.ts';
import { WriteError } from '../errors.ts';
import { EXIT_FAILED, EXIT_OK, type GlobalOptions } from './common.ts';
import { createNotifier, killRunningCommands } from '../notify/index.ts';
import { warnUnsharedNamespace } from '../notify/restart.ts';
import { AgentMetrics } from '../observe/metrics.ts';
import { startServer } from '../observe/server.ts';
import { Pipeline } from '../pipeline.ts';
import { startHotReload } from '../refresh/reload.ts';
import { Runner } from '../refresh/runner.ts';
import { compileFiles, prepareRender } from '../render/render.ts';
import { createWriter } from '../output/index.ts';
import { handleSignals } from '../signals.ts';
import { createSource } from '../source/index.ts';
import type { AgentConfig } from '../types.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretSource } from '../source/source.ts';
import { VERSION } from '../version.ts';

const SHUTDOWN_DEADLINE_MS = 4500;
const HEARTBEAT_MS = 5000;

export async function run(opts: GlobalOptions): Promise<number> {
  const { log } = opts;
  // Signals first, so that one arriving during start-up already has its meaning (docs/commands.md, Signals).
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

  // --listen replaces server.listen at start and in every reload (so a reload never sees it "changed").
  const load = async (path: string): Promise<AgentConfig> => {
    const c = await loadConfig(path);
    return opts.listen === undefined ? c : { ...c, server: { ...c.server, listen: opts.listen } };
  };
  const config = await load(opts.configPath);
  const compiled = await compileFiles(config);
  // Template files render in a worker: start it now, while the values are fetched.
  prepareRender(compiled);
  const metrics = new AgentMetrics({ version: VERSION });
  metrics.declareConfig(config);
  const source = await createSource(config, log, metrics);
  log.info(source.describeIdentity(), 'identity');
  await warnUnsharedNamespace(config.notify, log);

  const makePipeline = (c: AgentConfig, compiledFiles: typeof compiled, src: SecretSource) =>
    new Pipeline({ config: c, compiled: compiledFiles, source: src, writer: createWriter({ outputDir: c.outputDir, layout: c.layout, targets: c.targets, log }), log, metrics });
  // `skipped` (cut short by shutdown or reload) is not an outcome worth counting.
  const makeNotifier = (c: AgentConfig) =>
    createNotifier(c.notify, { log, signal: shutdown.signal, onResult: (target, result) => result !== 'skipped' && metrics.notified(target, result === 'success' ? 'success' : 'error') });

  // One agent per volume (README "Volume lock"): wait (bounded) for another holder, else exit 1.
  // Held until exit: outputDir cannot change without a restart.
  const pipeline = makePipeline(config, compiled, source);
  try {
    // SIGTERM while waiting for another agent's lock: stop now (nothing was written), not at the hard deadline.
    const locked = await Promise.race([pipeline.writer.lock().then(() => true), stopped.then(() => false)]);
    if (!locked) {
      source.close();
      log.info('stopped before taking the volume lock; nothing written');
      return EXIT_OK;
    }
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
  // Monotonic: a wall-clock step (NTP, VM resume) must not make a turning loop look blocked.
  let lastBeat = performance.now();
  const heartbeat = setInterval(() => (lastBeat = performance.now()), HEARTBEAT_MS);
  const server = config.server.listen
    ? await startServer({
        listen: config.server.listen,
        metrics,
        log,
        // Live while the event loop turns (a blocked loop misses heartbeats).
        health: () => ({
          live: performance.now() - lastBeat < 6 * HEARTBEAT_MS,
          ready: runner.ready,
          ...(runner.ready ? {} : { reason: runner.notReadyReason ?? 'not ready' }),
        }),
      })
    : undefined;
  if (server) log.info({ address: `${server.address.host}:${server.address.port}` }, 'serving /metrics, /healthz, /readyz');

  // Hot reload (refresh/reload.ts): the config file and every template file; SIGHUP takes the same path.
  const hot = await startHotReload({ configPath: opts.configPath, log, metrics, runner, makePipeline, makeNotifier, stopping: () => stopping, load });
  onHangup = () => hot.hangup();

  const unwatchSource = source.watch?.(() => runner.checkAllNow());

  const first = runner.firstRender().catch((err: unknown) => {
    logUnexpected(log, err);
    return false;
  });
  await Promise.race([stopped, first]);
  if (!stopping) await stopped;

  await Promise.allSettled([hot.close(), unwatchSource?.()]);
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
