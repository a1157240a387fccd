// Fakes for the in-process tests of the core (test/unit/pipeline.test.ts,
// test/unit/refresh/runner.test.ts). They are fakes, not mocks of AWS: the e2e tests drive
// the real source against moto and the real notifier against real processes.
// Here a fake source and a fake notifier let a test control timing exactly
// (hold a check until the test releases it, fail a secret until the test fixes
// it) and count every call, which a spawned process cannot show.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../agent/config/index.ts';
import { SourceError } from '../../agent/errors.ts';
import type { Notifier } from '../../agent/notify/index.ts';
import { createLogger, type Logger } from '../../agent/observe/log.ts';
import { Pipeline } from '../../agent/pipeline.ts';
import { compileFiles } from '../../agent/render/render.ts';
import { createWriter, type OutputWriter, type WriteResult } from '../../agent/output/index.ts';
import type { FetchResult, SecretSource } from '../../agent/source/source.ts';
import type { RenderedFile, SecretMetadata, SecretSpec, SecretValue } from '../../agent/types.ts';

/**
 * A Secrets Manager stand-in held in memory: each id has a current value whose
 * version is bumped by set(). fail(id, …) makes every read of it throw until
 * heal(id); hold(name) makes the next describe() of it wait until released.
 */
export class FakeSource implements SecretSource {
  readonly kind = 'aws' as const;
  readonly #values = new Map<string, { text: string; version: number }>();
  readonly #failing = new Map<string, { code: string; transient: boolean }>();
  readonly #holds = new Map<string, { promise: Promise<void>; release: () => void }>();
  /** Local names, one entry per call. */
  readonly fetched: string[] = [];
  readonly described: string[] = [];

  set(id: string, text: string): void {
    this.#values.set(id, { text, version: (this.#values.get(id)?.version ?? 0) + 1 });
  }

  fail(id: string, code = 'AccessDeniedException', transient = false): void {
    this.#failing.set(id, { code, transient });
  }

  heal(id: string): void {
    this.#failing.delete(id);
  }

  /** The next describe() of `name` waits until the returned function is called. */
  hold(name: string): () => void {
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.#holds.set(name, { promise, release });
    return () => {
      this.#holds.delete(name);
      release();
    };
  }

  count(list: readonly string[], name: string): number {
    return list.filter((n) => n === name).length;
  }

  #read(spec: SecretSpec): SecretValue {
    const f = this.#failing.get(spec.id);
    if (f) throw new SourceError({ secret: spec.name, secretId: spec.id, code: f.code, transient: f.transient, message: `fake ${f.code}` });
    const v = this.#values.get(spec.id);
    if (!v) throw new SourceError({ secret: spec.name, secretId: spec.id, code: 'ResourceNotFoundException', transient: false, message: 'no such secret' });
    return { arn: `arn:fake:${spec.id}`, name: spec.id, versionId: `v${v.version}`, versionStages: ['AWSCURRENT'], secretString: v.text };
  }

  fetchAll(specs: readonly SecretSpec[]): Promise<Map<string, FetchResult>> {
    const out = new Map<string, FetchResult>();
    for (const spec of specs) {
      this.fetched.push(spec.name);
      try {
        out.set(spec.name, this.#read(spec));
      } catch (err) {
        out.set(spec.name, err as SourceError);
      }
    }
    return Promise.resolve(out);
  }

  fetch(spec: SecretSpec): Promise<SecretValue> {
    this.fetched.push(spec.name);
    // A failed read rejects, as the real source's does.
    return Promise.resolve().then(() => this.#read(spec));
  }

  async describe(spec: SecretSpec): Promise<SecretMetadata> {
    this.described.push(spec.name);
    await this.#holds.get(spec.name)?.promise;
    const v = this.#read(spec);
    return { arn: v.arn, name: v.name, versionIdForStage: v.versionId, rotationEnabled: false, deleted: false };
  }

  describeIdentity(): Record<string, string> {
    return { source: 'fake' };
  }

  close(): void {}
}

/** A notifier that records each call instead of signalling anything. */
export class FakeNotifier implements Notifier {
  readonly calls: { changed: readonly string[]; generation?: string | undefined }[] = [];
  notify(changed: readonly string[], context?: { outputDir: string; generation?: string }): Promise<void> {
    if (changed.length > 0) this.calls.push({ changed: [...changed], generation: context?.generation });
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

/** The real writer, counting the writes that changed something (a new generation). */
export class CountingWriter implements OutputWriter {
  readonly #inner: OutputWriter;
  generations = 0;
  constructor(inner: OutputWriter) {
    this.#inner = inner;
  }
  lock(): Promise<void> {
    return this.#inner.lock();
  }
  prepare(): Promise<void> {
    return this.#inner.prepare();
  }
  async write(files: readonly RenderedFile[]): Promise<WriteResult> {
    const r = await this.#inner.write(files);
    if (r.changed.length > 0) this.generations++;
    return r;
  }
}

/** A logger that keeps every line, parsed, so a test can wait for one. */
export function captureLog(): { log: Logger; lines: { level: string; msg: string; [k: string]: unknown }[] } {
  const lines: { level: string; msg: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: string; msg: string });
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination }), lines };
}

export interface Core {
  readonly dir: string;
  readonly outDir: string;
  readonly source: FakeSource;
  readonly writer: CountingWriter;
  readonly log: Logger;
  readonly lines: ReturnType<typeof captureLog>['lines'];
  /** A new Pipeline on the same config, source and writer. */
  pipeline(): Pipeline;
  cleanup(): Promise<void>;
}

/**
 * A temp dir with a config (YAML, loaded by the real loader), a fake source and
 * the real writer on `<dir>/out` (generations layout).
 * `secrets`: local name -> id; `files`: the YAML of the `files:` list.
 */
export async function makeCore(secrets: Record<string, string>, files: string): Promise<Core> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-core-'));
  const outDir = join(dir, 'out');
  const yaml = [
    `outputDir: ${outDir}`,
    'refresh: { interval: 1h, jitter: 0, rotationAware: false }',
    'secrets:',
    ...Object.entries(secrets).map(([name, id]) => `  ${name}: { id: ${id} }`),
    'files:',
    files,
  ].join('\n');
  await writeFile(join(dir, 'config.yaml'), yaml);
  const config = await loadConfig(join(dir, 'config.yaml'));
  const compiled = await compileFiles(config);
  const source = new FakeSource();
  const { log, lines } = captureLog();
  const writer = new CountingWriter(createWriter({ outputDir: outDir, layout: 'generations', log }));
  return {
    dir,
    outDir,
    source,
    writer,
    log,
    lines,
    pipeline: () => new Pipeline({ config, compiled, source, writer, log }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
