// Case 7: probes. The measurements behind three choices the image and the
// agent make, kept runnable so the reasons can be re-checked on a new Node:
// - init containers run without --lite-mode: any V8 code-generation flag makes
//   Node reject the code cache of its own built-in modules;
// - the Liquid engine gets a fixed locale: Intl.DateTimeFormat pages ICU data in;
// - zod runs jitless: what loading a config costs the first time and on a reload.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeConfig, type BenchContext } from './fixtures.ts';
import { median, memory, REPO, round, start } from './lib.ts';

export interface ProbesResult {
  /** Median ms to load http, https, crypto, stream, fs/promises and child_process, per node flag set. */
  builtins: { flags: string; medianMs: number }[];
  /** RSS of an idle node with the image's flags, without and with one Intl.DateTimeFormat. */
  intl: { withoutMB: number; withMB: number; deltaMB: number; fileDeltaMB: number };
  /** loadConfig of a 10-secret config in a fresh process (the init container's flags): first call and a second one (a reload). */
  configLoad: { firstMs: number; reloadMs: number };
  runs: number;
}

/** Run `node args` to its end and return what it printed on stdout. */
async function output(args: readonly string[]): Promise<string> {
  const p = start(process.execPath, args);
  const { code } = await p.exited;
  if (code !== 0) throw new Error(`node ${args.join(' ')} exited ${code}: ${p.tail().slice(-2000)}`);
  return p.tail().trim();
}

const LOAD_BUILTINS = [
  'const t = performance.now();',
  "for (const m of ['http', 'https', 'crypto', 'stream', 'fs/promises', 'child_process']) require(m);",
  'console.log(performance.now() - t);',
].join(' ');

async function rssOf(flags: readonly string[], code: string): Promise<{ rssMB: number; fileMB: number }> {
  const p = start(process.execPath, [...flags, '-e', `${code}; setInterval(() => {}, 1000)`]);
  await sleep(1200);
  const m = memory(p.pid);
  await p.stop();
  return m;
}

export async function probesCase(ctx: BenchContext): Promise<ProbesResult> {
  const runs = ctx.quick ? 1 : 20;
  const flagSets = [...new Map([[], ctx.initFlags, ctx.imageFlags].map((f) => [f.join(' '), f])).values()];
  const times = new Map<string, number[]>(flagSets.map((f) => [f.join(' '), []]));
  for (let i = 0; i < runs; i++) {
    for (const f of flagSets) times.get(f.join(' '))?.push(Number(await output([...f, '-e', LOAD_BUILTINS])));
  }

  const without = await rssOf(ctx.imageFlags, '0');
  const withIntl = await rssOf(ctx.imageFlags, 'new Intl.DateTimeFormat().resolvedOptions()');

  const n = 10;
  const config = await writeConfig(join(ctx.root, 'probes'), {
    outputDir: join(ctx.root, 'probes', 'out'),
    secrets: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, id: `probes/s${i}` })),
    files: Array.from({ length: n }, (_, i) => `  - { path: s${i}.env, template: "P={{ secrets.s${i}.password }}" }`),
    server: false,
  });
  const load = pathToFileURL(join(REPO, 'agent/config/load.ts')).href;
  const script = [
    `const { loadConfig } = await import(${JSON.stringify(load)});`,
    'let t = performance.now();',
    `await loadConfig(${JSON.stringify(config)});`,
    'const first = performance.now() - t;',
    't = performance.now();',
    `await loadConfig(${JSON.stringify(config)});`,
    'console.log(JSON.stringify({ first, reload: performance.now() - t }));',
  ].join(' ');
  const first: number[] = [];
  const reload: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = JSON.parse(await output([...ctx.initFlags, '--input-type=module', '-e', script])) as { first: number; reload: number };
    first.push(r.first);
    reload.push(r.reload);
  }

  return {
    builtins: flagSets.map((f) => ({ flags: f.join(' ') || '(none)', medianMs: round(median(times.get(f.join(' ')) ?? []), 1) })),
    intl: {
      withoutMB: without.rssMB,
      withMB: withIntl.rssMB,
      deltaMB: round(withIntl.rssMB - without.rssMB, 1),
      fileDeltaMB: round(withIntl.fileMB - without.fileMB, 1),
    },
    configLoad: { firstMs: round(median(first), 1), reloadMs: round(median(reload), 1) },
    runs,
  };
}
