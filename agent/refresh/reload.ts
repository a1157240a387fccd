// Hot reload of `run`: the config file and every template file it names are
// watched, and a SIGHUP takes the same path. The contract:
//
// - Edits close together (150 ms) make one reload; a SIGHUP joins the same
//   debounce and, after the reload, checks every secret now. Reloads never
//   overlap: each waits for the one before it.
// - An invalid edit (schema, cross-references, a template that does not
//   compile) is rejected: each problem is logged with file:line, the running
//   config stays in force, `secrets_agent_config_reloads_total{result="error"}`.
// - Restart-only keys (source, outputDir, layout, targets, refresh.batchChecks, server.listen): a change to
//   any of them rejects the whole edit, naming the key; nothing of it applies.
// - A valid edit swaps in the new pipeline and notifier (Runner.reload): the
//   files are rendered with the new config and written; the app is notified
//   only when bytes on the volume changed (the writer decides; nothing else).
// - A reload whose write fails counts as failed (result="error"): the new
//   config is in force, the previous files stay until the write, retried by the
//   runner, succeeds.
// - The watched set follows the config: template files added or dropped by an
//   accepted edit are watched or unwatched.
// - Never throws: every failure is logged and counted.
import { loadConfig } from '../config/index.ts';
import { ConfigError, reportConfigError } from '../errors.ts';
import type { Notifier } from '../notify/index.ts';
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { Pipeline } from '../pipeline.ts';
import { compileFiles, type CompiledFiles } from '../render/render.ts';
import type { SecretSource } from '../source/source.ts';
import type { AgentConfig } from '../types.ts';
import type { Runner } from './runner.ts';

const DEBOUNCE_MS = 150;

export interface HotReloadOptions {
  configPath: string;
  log: Logger;
  metrics: AgentMetrics;
  runner: Runner;
  /** The wiring (cli/run.ts): a pipeline and a notifier for a config. */
  makePipeline(config: AgentConfig, compiled: CompiledFiles, source: SecretSource): Pipeline;
  makeNotifier(config: AgentConfig): Notifier;
  /** True once shutdown has begun: a SIGHUP is then ignored and no check follows a reload. */
  stopping(): boolean;
  /** Reads the config (run's command-line overrides applied). @default loadConfig */
  load?: (configPath: string) => Promise<AgentConfig>;
}

export interface HotReload {
  /** SIGHUP: reload the config as an edit would, then check every secret now. */
  hangup(): void;
  /** Stop watching and wait for the reload in flight. */
  close(): Promise<void>;
}

/** Keys a live reload cannot change: they need a restart. */
export function restartOnlyChange(a: AgentConfig, b: AgentConfig): string | undefined {
  if (JSON.stringify(a.source) !== JSON.stringify(b.source)) return 'source';
  if (a.outputDir !== b.outputDir) return 'outputDir';
  if (a.layout !== b.layout) return 'layout';
  // Each target is a writer root of its own: which roots exist is fixed for the process.
  if ((a.targets ?? []).join('\0') !== (b.targets ?? []).join('\0')) return 'targets';
  // The source is built once: it batches checks or does not.
  if (a.refresh.batchChecks !== b.refresh.batchChecks) return 'refresh.batchChecks';
  if (a.server.listen !== b.server.listen) return 'server.listen';
  return undefined;
}

function templateFiles(config: AgentConfig): string[] {
  return config.files.flatMap((f) => (f.kind === 'templateFile' ? [f.templateFile] : []));
}

/** Watch the config and its template files; reload on an edit or a SIGHUP (hangup()). */
export async function startHotReload(o: HotReloadOptions): Promise<HotReload> {
  const { configPath, log, metrics, runner } = o;
  const { watch } = await import('chokidar');
  const watched = (c: AgentConfig) => [configPath, ...templateFiles(c)];
  const watcher = watch(watched(runner.pipeline.config), { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 25 } });
  let timer: NodeJS.Timeout | undefined;
  let reloading: Promise<void> = Promise.resolve();

  const reload = async (): Promise<void> => {
    const current = runner.pipeline.config;
    const before = watched(current);
    try {
      const next = await (o.load ?? loadConfig)(configPath);
      const nextCompiled = await compileFiles(next);
      const fixed = restartOnlyChange(current, next);
      if (fixed) {
        metrics.configReloaded('error');
        log.error({ key: fixed }, `config change rejected: changing ${fixed} needs a restart of the agent; the running config stays in force`);
        return;
      }
      const writeFailed = await runner.reload(o.makePipeline(next, nextCompiled, runner.pipeline.source), o.makeNotifier(next));
      metrics.declareConfig(next);
      const now = watched(next);
      watcher.unwatch(before.filter((p) => !now.includes(p)));
      watcher.add(now);
      if (writeFailed) {
        metrics.configReloaded('error');
        log.error({ config: configPath }, 'config reloaded, but writing its files failed (logged above): the previous files stay until the write, retried, succeeds');
        return;
      }
      metrics.configReloaded('success');
      log.info({ config: configPath }, 'config reloaded');
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

  let checkAllAfterReload = false;
  const schedule = (checkAll = false): void => {
    checkAllAfterReload ||= checkAll;
    clearTimeout(timer);
    timer = setTimeout(() => {
      const all = checkAllAfterReload;
      checkAllAfterReload = false;
      reloading = reloading.then(reload).then(() => {
        if (all && !o.stopping()) runner.checkAllNow();
      });
    }, DEBOUNCE_MS);
    timer.unref();
  };
  watcher.on('all', () => schedule());
  watcher.on('error', (err) => log.warn({ err: String(err) }, 'watching config files failed'));

  return {
    hangup() {
      if (o.stopping()) return;
      log.info({ signal: 'SIGHUP' }, 'SIGHUP received: reloading the config and checking every secret now');
      schedule(true);
    },
    async close() {
      clearTimeout(timer);
      await Promise.allSettled([watcher.close(), reloading]);
    },
  };
}
