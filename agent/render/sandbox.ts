// Template files are rendered in a worker thread (worker.ts), bounded in time
// and memory whatever the template does:
// - time: TEMPLATE_TIME_LIMIT_MS per file, counted from the request (or the
//   previous file's answer); past it the worker is terminated (V8 stops even a
//   tight loop) and the file fails; the files after it go to a fresh worker;
// - memory: the worker's V8 heap is capped (resourceLimits,
//   TEMPLATE_HEAP_LIMIT_MB); a template that outgrows it kills the worker
//   (ERR_WORKER_OUT_OF_MEMORY), never the agent, and its file fails.
// Meanwhile the agent's own event loop is free: /healthz answers, the volume
// lock's lease is refreshed, checks go on.
//
// The worker starts on the first render that has a template file (a config of
// raw secrets never starts one: `init` of such a config pays nothing), is
// reused by the renders that follow, and is stopped after WORKER_IDLE_MS
// without one, so an idle sidecar carries no second heap between rotations.
// Its cost (start, per render, memory) is measured by `npm run bench --
// --only=template` (test/bench/template.ts) and stated in docs/templates.md.
import { Worker } from 'node:worker_threads';
import { RenderError } from '../errors.ts';
import type { SecretValue } from '../types.ts';
import type { CompiledFile, CompiledFiles } from './render.ts';
import type { FromWorker, ToWorker, WorkerTemplate } from './worker.ts';
import { TEMPLATE_HEAP_LIMIT_MB, TEMPLATE_TIME_LIMIT_MS, TEMPLATE_YOUNG_MB } from './limits.ts';
import { WORKER_SOURCE } from './worker-source.ts';

export { TEMPLATE_HEAP_LIMIT_MB, TEMPLATE_TIME_LIMIT_MS } from './limits.ts';
/** How long the worker may take to start and parse the templates (a loaded node can be slow; parsing is linear). */
const START_LIMIT_MS = 30_000;
/** An idle worker is stopped after this long without a render. */
export const WORKER_IDLE_MS = 30_000;

/** What one template file gave: its bytes, or why not. */
export type TemplateResult = Buffer | RenderError;

interface Running {
  readonly worker: Worker;
  readonly compiled: CompiledFiles;
  readonly ready: Promise<void>;
  /** Set when the worker ended (terminated, out of memory, crashed): why. */
  ended?: { readonly outOfMemory: boolean };
  onMessage?: (msg: FromWorker) => void;
  onEnd?: () => void;
}

const timeLimitText = `the template ran longer than ${TEMPLATE_TIME_LIMIT_MS / 1000} s and was stopped (a loop over a huge range, or an output that grows without end?); every template file has ${TEMPLATE_TIME_LIMIT_MS / 1000} s`;
const memoryLimitText = `the template needed more than ${TEMPLATE_HEAP_LIMIT_MB} MB of memory and was stopped (an output or a loop that grows without end?); every template file has ${TEMPLATE_HEAP_LIMIT_MB} MB`;

export class TemplateSandbox {
  #running: Running | undefined;
  #idle: NodeJS.Timeout | undefined;
  /** Renders one at a time (the worker has one thread). */
  #queue: Promise<unknown> = Promise.resolve();
  /** Workers started (tests and the bench read it). */
  started = 0;
  #nextId = 0;

  /**
   * Renders `files` (template files of `compiled`, whose secrets all have a
   * value in `values`) in the worker; one result per file index.
   */
  render(compiled: CompiledFiles, declared: readonly string[], values: ReadonlyMap<string, SecretValue>, files: readonly CompiledFile[]): Promise<Map<number, TemplateResult>> {
    const run = this.#queue.then(() => this.#render(compiled, declared, values, files));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Starts the worker for `compiled` ahead of its first render, so its start
   * (tens of ms) overlaps the fetch instead of following it. Stopped like an
   * idle one if no render comes.
   */
  warm(compiled: CompiledFiles): void {
    if (this.#running || !compiled.files.some((f) => f.template)) return;
    this.#worker(compiled);
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => void this.close(), WORKER_IDLE_MS).unref();
  }

  /** Stops the worker now (tests; the process may also just exit: the worker does not hold it). */
  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const r = this.#running;
    this.#running = undefined;
    if (r) await r.worker.terminate();
  }

  async #render(compiled: CompiledFiles, declared: readonly string[], values: ReadonlyMap<string, SecretValue>, files: readonly CompiledFile[]): Promise<Map<number, TemplateResult>> {
    clearTimeout(this.#idle);
    const results = new Map<number, TemplateResult>();
    const byIndex = new Map(files.map((f) => [f.index, f]));
    const needed = new Set(files.flatMap((f) => [...f.secrets]));
    const sent = [...values].filter(([name]) => needed.has(name));
    let remaining = files.map((f) => f.index);
    while (remaining.length > 0) {
      const running = this.#worker(compiled);
      let failure: string;
      // Held while a render waits on it (`init` must not exit mid-render), let go after.
      running.worker.ref();
      try {
        await withDeadline(running.ready, START_LIMIT_MS, running);
        const answered = await this.#request(running, { type: 'render', id: ++this.#nextId, declared, values: sent, files: remaining }, results, byIndex);
        running.worker.unref();
        if (answered === remaining.length) break;
        // The worker ended on the file after the last one answered.
        failure = running.ended?.outOfMemory ? memoryLimitText : timeLimitText;
        remaining = remaining.slice(answered);
      } catch (err) {
        running.worker.unref();
        // The worker could not start, or failed in a way that is not a limit: every file left fails, saying so.
        await this.close();
        const why = `the render worker failed (${err instanceof Error ? (err as NodeJS.ErrnoException).code ?? err.name : typeof err})`;
        for (const index of remaining) results.set(index, new RenderError(byIndex.get(index)!.spec.path, why));
        return results;
      }
      const index = remaining[0]!;
      results.set(index, new RenderError(byIndex.get(index)!.spec.path, failure));
      remaining = remaining.slice(1);
      await this.close();
    }
    this.#idle = setTimeout(() => void this.close(), WORKER_IDLE_MS).unref();
    return results;
  }

  /** Sends one render request; resolves with how many files were answered before the worker was done or ended. */
  #request(running: Running, msg: Extract<ToWorker, { type: 'render' }>, results: Map<number, TemplateResult>, byIndex: ReadonlyMap<number, CompiledFile>): Promise<number> {
    return new Promise((resolve) => {
      let answered = 0;
      let timer: NodeJS.Timeout;
      const finish = (): void => {
        clearTimeout(timer);
        running.onMessage = undefined;
        running.onEnd = undefined;
        resolve(answered);
      };
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          // Terminate: V8 stops the running template wherever it is.
          void running.worker.terminate();
        }, TEMPLATE_TIME_LIMIT_MS);
      };
      running.onMessage = (reply) => {
        if (reply.type === 'file' && reply.id === msg.id) {
          const path = byIndex.get(reply.index)!.spec.path;
          results.set(reply.index, reply.bytes ? Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength) : new RenderError(path, reply.error ?? 'failed'));
          answered++;
          arm();
        } else if (reply.type === 'done' && reply.id === msg.id) {
          finish();
        }
      };
      running.onEnd = finish;
      if (running.ended) return finish();
      arm();
      running.worker.postMessage(msg);
    });
  }

  /** The running worker for `compiled`, started (or given these templates) when needed. */
  #worker(compiled: CompiledFiles): Running {
    const current = this.#running;
    if (current && !current.ended && current.compiled === compiled) return current;
    if (current) void current.worker.terminate();
    const worker =
      WORKER_SOURCE === undefined
        ? new Worker(new URL('./worker.ts', import.meta.url), { resourceLimits: limits(), stdout: false, stderr: false })
        : new Worker(WORKER_SOURCE, { eval: true, resourceLimits: limits(), stdout: false, stderr: false });
    this.started++;
    let ready!: () => void;
    let failed!: (err: unknown) => void;
    const running: Running = {
      worker,
      compiled,
      ready: new Promise<void>((res, rej) => {
        ready = res;
        failed = rej;
      }),
    };
    // Not yet started is not an unhandled rejection: #render awaits it.
    running.ready.catch(() => undefined);
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'ready') ready();
      else running.onMessage?.(msg);
    });
    let outOfMemory = false;
    worker.on('error', (err: NodeJS.ErrnoException) => {
      outOfMemory ||= err.code === 'ERR_WORKER_OUT_OF_MEMORY';
      failed(err);
    });
    worker.on('exit', () => {
      running.ended = { outOfMemory };
      if (this.#running === running) this.#running = undefined;
      failed(new Error('the render worker exited'));
      running.onEnd?.();
    });
    const templates: WorkerTemplate[] = compiled.files.flatMap((f) =>
      f.template && (f.spec.kind === 'template' || f.spec.kind === 'templateFile')
        ? [{ index: f.index, path: f.spec.path, secret: f.spec.secret, source: f.template.source, origin: f.template.origin, literalPaths: [...f.template.literalPaths], computed: [...f.template.computed] }]
        : [],
    );
    worker.postMessage({ type: 'templates', templates } satisfies ToWorker);
    // The worker never keeps the process alive: `init` exits when its work is done.
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    this.#running = running;
    return running;
  }
}

function limits(): { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number } {
  return { maxOldGenerationSizeMb: TEMPLATE_HEAP_LIMIT_MB, maxYoungGenerationSizeMb: TEMPLATE_YOUNG_MB };
}

async function withDeadline(ready: Promise<void>, ms: number, running: Running): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          void running.worker.terminate();
          reject(new Error('the render worker did not start in time'));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
