// The render worker's code, for the bundle: scripts/build.ts bundles
// agent/render/worker.ts into one CommonJS string and puts it here in place of
// `undefined`, so the single-file bundle carries it (sandbox.ts starts it with
// `eval: true`). Unbundled (node agent/main.ts), it stays undefined and the
// worker runs agent/render/worker.ts from its file.
export const WORKER_SOURCE: string | undefined = undefined;
