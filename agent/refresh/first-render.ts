// The first render, for `init` and `run` alike: bring every value up to date,
// render every file, write one generation; retried until it succeeds, until
// the mode declines to retry a failure, or until the signal or the time budget
// ends it. The two modes differ only in the options they pass:
//
//                 init                                 run (Runner.firstRender)
//   refresh       fetch the secrets without a value    that, and re-check the ones held
//   retry         transient fetch failures only        every failure
//   ends          --timeout (signal and budgetMs)      stop() (signal)
//   backoff       200 ms doubling, at most 10 s        500 ms doubling, at most the interval
//   wait          a plain timer (keeps init alive)     unref'd, cut short by a source change or reload
//
// One attempt:
//   1. refresh(pipeline): the secrets still without a value are a `fetch`
//      failure, and nothing is rendered;
//   2. prepare the output directory, render every file strictly and write
//      (pipeline.commit('strict')): any render error is a `render` failure and
//      nothing is written;
//   an error thrown by either step (a failed write: ENOSPC, EACCES) is an `error`
//   failure; a TypeError is a bug and is thrown, never retried.
// After a failed attempt, in this order (p-retry's, which init used before):
// onRetry(failure, attempt, waitMs) when it is retried, then the loop ends if
// the budget is spent, else it waits the backoff (at most what is left of the budget).
// The signal is checked after each step: once aborted, the loop ends with the
// last attempt's failure. When `pipeline()` answers another Pipeline (a config
// reload), the attempt starts over on it at once.
import { setTimeout as sleep } from 'node:timers/promises';
import type { RenderError, SourceError } from '../errors.ts';
import type { Pipeline } from '../pipeline.ts';
import type { WriteResult } from '../output/index.ts';

export type AttemptFailure =
  /** Secrets still without a value after refresh, by local name. */
  | { readonly kind: 'fetch'; readonly failures: ReadonlyMap<string, SourceError> }
  /** Files that could not be rendered (nothing was written). */
  | { readonly kind: 'render'; readonly errors: readonly RenderError[] }
  /** Thrown by refresh, prepare or the write (e.g. a WriteError). */
  | { readonly kind: 'error'; readonly error: Error };

export type FirstRenderResult =
  | { readonly ok: true; readonly pipeline: Pipeline; readonly write: WriteResult | undefined }
  /** Stopped, out of time, or a failure not retried; `failure` is the last attempt's (none when stopped before one ended). */
  | { readonly ok: false; readonly failure?: AttemptFailure };

export interface FirstRenderOptions {
  /** The pipeline to render, asked at every attempt (a config reload may swap it). */
  readonly pipeline: () => Pipeline;
  /** Bring the pipeline's values up to date; returns the secrets still without a value. */
  readonly refresh: (pipeline: Pipeline, signal: AbortSignal) => Promise<ReadonlyMap<string, SourceError>>;
  /** Ends the loop (run: stop(); init: --timeout). Passed to refresh. */
  readonly signal: AbortSignal;
  /** Whether a failure is retried; false ends the loop with it. */
  readonly retry: (failure: AttemptFailure) => boolean;
  /** Called for each failure that is retried, before the wait (waitMs is 0 when the budget is spent). */
  readonly onRetry: (failure: AttemptFailure, attempt: number, waitMs: number) => void;
  /** Wait after attempt n: firstDelayMs · 2^(n−1) · (1 to 2, random), at most maxDelayMs(pipeline). */
  readonly firstDelayMs: number;
  readonly maxDelayMs: (pipeline: Pipeline) => number;
  /** No retry after this long from the start (init's --timeout). @default Infinity */
  readonly budgetMs?: number;
  /** How to wait; must return early when the signal aborts. @default a timer that keeps the process alive */
  readonly wait?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Called each time step 2 starts, before anything touches the volume (a signal handler may let a write finish). */
  readonly beforeWrite?: () => void;
}

const plainWait = (ms: number, signal: AbortSignal): Promise<void> => sleep(ms, undefined, { signal }).catch(() => undefined);

export async function firstRender(o: FirstRenderOptions): Promise<FirstRenderResult> {
  const { signal } = o;
  const budgetMs = o.budgetMs ?? Infinity;
  const wait = o.wait ?? plainWait;
  const start = performance.now();
  const timeLeft = (): number => budgetMs - (performance.now() - start);
  for (let attempt = 1; ; attempt++) {
    const pipeline = o.pipeline();
    let failure: AttemptFailure | undefined;
    try {
      const missing = await o.refresh(pipeline, signal);
      if (missing.size > 0) failure = { kind: 'fetch', failures: missing };
      if (signal.aborted) return failure ? { ok: false, failure } : { ok: false };
      if (o.pipeline() !== pipeline) continue; // reloaded meanwhile: start over on the new config
      if (!failure) {
        o.beforeWrite?.();
        await pipeline.writer.prepare();
        const out = await pipeline.commit('strict');
        if (out.renderErrors.length > 0) failure = { kind: 'render', errors: out.renderErrors };
        else if (o.pipeline() !== pipeline) continue; // a complete generation of the old config; the new one gets its own
        else return { ok: true, pipeline, write: out.write };
      }
    } catch (err) {
      if (err instanceof TypeError && !signal.aborted) throw err;
      failure = { kind: 'error', error: err as Error };
      if (signal.aborted) return { ok: false, failure };
    }
    if (!o.retry(failure)) return { ok: false, failure };
    const ms =
      timeLeft() > 0
        ? Math.round(Math.min(o.maxDelayMs(pipeline), o.firstDelayMs * 2 ** Math.min(attempt - 1, 30) * (1 + Math.random())))
        : 0;
    o.onRetry(failure, attempt, ms);
    if (signal.aborted) return { ok: false, failure };
    const left = timeLeft();
    if (left <= 0) return { ok: false, failure };
    await wait(Math.min(ms, left), signal);
    if (signal.aborted) return { ok: false, failure };
  }
}
