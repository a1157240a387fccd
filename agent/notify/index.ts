// Tell the app its files changed: after each successful swap, run the configured
// targets (signal / exec / http / restart) in order. A failing target is logged and
// counted, never thrown: the files are already in place, and the next target
// must still run.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observe/log.ts';
import type { NotifyTarget } from '../types.ts';
import { runExec } from './exec.ts';

export { killRunningCommands } from './exec.ts';
import { runHttp } from './http.ts';
import { STOPPED, type NotifyResult, type Outcome, type RunContext } from './outcome.ts';
import { runRestart } from './restart.ts';
import { runSignal } from './signal.ts';

export type { NotifyResult } from './outcome.ts';

export interface Notifier {
  /**
   * Run every target in order after a successful swap. `changed` = relative paths that changed.
   * A failing target is logged and reported, never thrown. Resolves when all targets are done.
   *
   * Calls are serialised: a call made while another is running starts after it.
   * An empty `changed` does nothing (nothing changed, nobody is told).
   */
  notify(changed: readonly string[], context?: { outputDir: string; generation?: string }): Promise<void>;
  /**
   * Cancel pending splays and running exec children (SIGTERM, then SIGKILL after 2 s) and
   * in-flight HTTP requests; later notify() calls do nothing. Resolves when the notify()
   * in progress (and any queued behind it) has finished reporting.
   */
  stop(): Promise<void>;
}

export interface NotifierOptions {
  log: Logger;
  /**
   * Aborting it is stop() without the wait: the agent's shutdown signal, shared by every
   * notifier a reload makes, so a SIGTERM reaches the notify in flight at once.
   */
  signal?: AbortSignal;
  /**
   * Called once per target that was due, after its log line, in target order
   * (for `secrets_agent_notify_total{target,result}`):
   * - `success`: the signal was sent / the command exited 0 / the endpoint answered 2xx;
   * - `failure`: it was not, for a reason an operator must look at (the log line says which);
   * - `skipped`: it was due but the agent stopped first (stop() during its splay, while it ran,
   *   or before its turn), so the app was not told. Not an app or config problem.
   * Not called for a target whose `files` filter matched none of the changed files (it was
   * not due: counting it would make the metric grow with every unrelated change), nor for
   * notify() calls made after stop().
   * An exception thrown here is logged and otherwise ignored.
   */
  onResult?: (target: string, result: NotifyResult) => void;
}

/**
 * Per target, in order:
 * 1. `files` filter: skip quietly (debug log) unless one of its files is in `changed`;
 *    a `restart` target is skipped too (info log) when a successful restart of it began
 *    after this notify() call: the app started again after these files were written.
 *    Neither calls onResult: the target was not due.
 * 2. splay: wait a random 0..splayMs (spreads replicas); stop() cuts the wait short.
 * 3. run it (see signal.ts / exec.ts / http.ts / restart.ts for what each kind does and reports).
 * 4. log one line (info on success or skip, warn on failure) with the target name and reason,
 *    then call onResult.
 */
export function createNotifier(targets: readonly NotifyTarget[], options: NotifierOptions): Notifier {
  const { log } = options;
  const stopper = new AbortController();
  const cancelled = options.signal ? AbortSignal.any([stopper.signal, options.signal]) : stopper.signal;
  let queue: Promise<void> = Promise.resolve();
  /** When each restart target last began a restart that succeeded (after its splay): see runAll. */
  const restartedAt = new Map<NotifyTarget, number>();

  const report = (target: NotifyTarget, outcome: Outcome, startedAt: number): void => {
    const record = {
      ...outcome.details,
      target: target.name,
      kind: target.kind,
      result: outcome.result,
      reason: outcome.reason,
      durationMs: Math.round(performance.now() - startedAt),
    };
    if (outcome.result === 'failure') log.warn(record, 'notify target failed');
    else if (outcome.result === 'success') log.info(record, 'notify target succeeded');
    else log.info(record, 'notify target skipped');
    try {
      options.onResult?.(target.name, outcome.result);
    } catch (err) {
      log.error({ target: target.name, err }, 'notify onResult callback threw');
    }
  };

  const runOne = async (target: NotifyTarget, ctx: RunContext): Promise<Outcome> => {
    if (ctx.signal.aborted) return STOPPED;
    if (target.splayMs > 0) {
      const delay = Math.floor(Math.random() * (target.splayMs + 1));
      log.debug({ target: target.name, delayMs: delay }, 'notify target waiting for splay');
      try {
        // Unref'd: a pending splay never keeps the process alive on its own.
        await sleep(delay, undefined, { signal: ctx.signal, ref: false });
      } catch {
        return STOPPED;
      }
    }
    try {
      switch (target.kind) {
        case 'signal':
          return await runSignal(target);
        case 'exec':
          return await runExec(target, ctx);
        case 'http':
          return await runHttp(target, ctx);
        case 'restart': {
          const began = performance.now();
          const outcome = await runRestart(target, ctx);
          // Only a restart that happened gave the app the files written before it.
          if (outcome.result === 'success') restartedAt.set(target, began);
          return outcome;
        }
      }
    } catch (err) {
      // The runners report their own failures; this is a bug, but still not fatal.
      return { result: 'failure', reason: `internal error: ${err instanceof Error ? err.message : String(err)}` };
    }
  };

  const runAll = async (changed: readonly string[], context: { outputDir: string; generation?: string } | undefined, writtenAt: number): Promise<void> => {
    const ctx: RunContext = { changed, outputDir: context?.outputDir, generation: context?.generation, signal: cancelled };
    for (const target of targets) {
      // A path under `files` may be an eachKey directory: any change under it counts.
      if (target.files !== undefined && !target.files.some((f) => f === '.' || changed.some((c) => c === f || c.startsWith(`${f}/`)))) {
        log.debug({ target: target.name }, 'notify target not due: none of its files changed');
        continue;
      }
      // A restart that began after this write (one queued before it, still in its splay then)
      // already gave the app these files: a second one would restart it for nothing.
      if (target.kind === 'restart' && (restartedAt.get(target) ?? -Infinity) > writtenAt) {
        log.info({ target: target.name }, 'notify target not due: the app container was restarted after this change already');
        continue;
      }
      const startedAt = performance.now();
      report(target, await runOne(target, ctx), startedAt);
    }
  };

  return {
    notify(changed, context) {
      if (cancelled.aborted || changed.length === 0) return Promise.resolve();
      const snapshot = [...changed];
      const writtenAt = performance.now();
      const run = queue.then(() => runAll(snapshot, context, writtenAt));
      queue = run.catch(() => undefined);
      return run;
    },
    async stop() {
      stopper.abort();
      await queue;
    },
  };
}
