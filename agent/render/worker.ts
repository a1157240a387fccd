// The render worker: a worker thread that renders template files for
// sandbox.ts, so that a template that runs away (a loop over a huge range, an
// output that grows without end) is stopped by its deadline or its heap limit
// instead of blocking the agent's event loop (/healthz, the volume lock's lease,
// checks) or eating the pod's memory. It holds no credentials and no AWS
// client: only the templates and, during a render, the values they read.
//
// Messages (from sandbox.ts):
//   { type: 'templates', templates: WorkerTemplate[] } -> parse them; reply { type: 'ready' }
//   { type: 'render', id, declared, values, files }     -> one { type: 'file', id, index, bytes | error }
//                                                          per file, in order, then { type: 'done', id }
// The sandbox sends only files whose secrets all have a value (render.ts
// checks that first). An error is the RenderError's message without its `file "…": ` prefix (the
// sandbox adds it back): it names lines, variables and keys, never a value.
import { parentPort } from 'node:worker_threads';
import { RenderError } from '../errors.ts';
import type { SecretValue } from '../types.ts';
import { buildContext } from './context.ts';
import { parseTemplate, renderTemplate, type CompiledTemplate, type TemplateOrigin } from './render.ts';

/** A template file as the worker is given it (plain data: it crosses threads by structured clone). */
export interface WorkerTemplate {
  readonly index: number;
  readonly path: string;
  readonly secret: string | undefined;
  readonly source: string;
  readonly origin: TemplateOrigin;
  readonly literalPaths: readonly string[];
  readonly computed: readonly (readonly [number, readonly string[]])[];
}

export type ToWorker =
  | { readonly type: 'templates'; readonly templates: readonly WorkerTemplate[] }
  | { readonly type: 'render'; readonly id: number; readonly declared: readonly string[]; readonly values: readonly (readonly [string, SecretValue])[]; readonly files: readonly number[] };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'file'; readonly id: number; readonly index: number; readonly bytes?: Uint8Array; readonly error?: string }
  | { readonly type: 'done'; readonly id: number };

interface Parsed {
  readonly path: string;
  readonly secret: string | undefined;
  readonly template: CompiledTemplate;
}

const port = parentPort;
if (!port) throw new Error('agent/render/worker.ts runs as a worker thread (sandbox.ts starts it)');
let templates = new Map<number, Parsed>();

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'templates') {
    templates = new Map(
      msg.templates.map((t) => [
        t.index,
        {
          path: t.path,
          secret: t.secret,
          template: { parsed: parseTemplate(t.source), source: t.source, origin: t.origin, literalPaths: new Set(t.literalPaths), computed: new Map(t.computed.map(([row, v]) => [row, [...v]])) },
        },
      ]),
    );
    port.postMessage({ type: 'ready' } satisfies FromWorker);
    return;
  }
  const context = buildContext(msg.declared, new Map(msg.values));
  for (const index of msg.files) {
    const t = templates.get(index);
    let reply: FromWorker;
    try {
      if (!t) throw new Error(`no template for file ${index}`);
      reply = { type: 'file', id: msg.id, index, bytes: renderTemplate(t.path, t.secret, t.template, context) };
    } catch (err) {
      const prefix = `file ${JSON.stringify(t?.path ?? '')}: `;
      const error =
        err instanceof RenderError && err.message.startsWith(prefix)
          ? err.message.slice(prefix.length)
          : // No message: an error we did not expect may hold anything.
            `unexpected ${err instanceof Error ? err.name : typeof err} while rendering (a bug: please report it)`;
      reply = { type: 'file', id: msg.id, index, error };
    }
    port.postMessage(reply);
  }
  port.postMessage({ type: 'done', id: msg.id } satisfies FromWorker);
});
