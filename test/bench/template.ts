// Template rendering bounds and their cost (docs/templates.md, "Limits"):
//
//   node test/bench/template.ts [--entry=<agent entry>] [--skip-idle]
//
// 1. Runaway: `run` (file source, no AWS) with the issue's loop
//    `{% for i in (1..100000000) %}xxxxxxxxxx{% endfor %}` and a loop Liquid's
//    memory limit cannot see (nested loops over a secret's array); a secret change
//    makes them run. Prints, per template: wall time from the change to the
//    file's error line, the agent's peak RSS (VmHWM) and its RSS growth, the worst
//    /healthz latency (polled every 50 ms) and the oldest the lock lease got.
//    --entry: the agent to run (default: dist/secrets-agent.mjs, built when
//    stale; give an older checkout's agent/main.ts for "before").
// 2. Cost of the render worker, in this process (agent/render, from source):
//    the first render (the worker's start + parse + render) and a warm render of
//    10 template files, median of 50, against the same files rendered on the
//    calling thread (what the agent did before).
// 3. Idle memory: `run` of a 10-template config; RssAnon with the worker alive
//    (just after the first render) and after WORKER_IDLE_MS (the worker stopped).
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureBundle } from './fixtures.ts';
import { memory, median, REPO, round, start, stopAll, table, type Proc } from './lib.ts';
import { buildContext } from '../../agent/render/context.ts';
import { compileFiles, renderFiles, renderTemplate } from '../../agent/render/render.ts';
import { WORKER_IDLE_MS } from '../../agent/render/sandbox.ts';
import type { AgentConfig, SecretValue } from '../../agent/types.ts';

const args = process.argv.slice(2);
const entryArg = args.find((a) => a.startsWith('--entry='))?.slice('--entry='.length);
const notes: string[] = [];
const entry = entryArg ?? (await ensureBundle(notes)) ?? join(REPO, 'agent/main.ts');
const node = process.execPath;

const RANGE = '{% if secrets.db.mode == "runaway" %}{% for i in (1..100000000) %}xxxxxxxxxx{% endfor %}{% endif %}{{ secrets.db.user }}';
const NESTED = '{% if secrets.db.mode == "runaway" %}{% for a in secrets.db.arr %}{% for b in secrets.db.arr %}{% for c in secrets.db.arr %}{% endfor %}{% endfor %}{% endfor %}{% endif %}{{ secrets.db.user }}';
const secret = (mode: string, user: string): string => `db: '${JSON.stringify({ mode, user, arr: Array.from({ length: 2000 }, (_, i) => i) })}'\n`;

async function runaway(name: string, template: string): Promise<(string | number)[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-bench-tpl-'));
  try {
    await writeFile(join(dir, 'secrets.yaml'), secret('calm', 'u1'));
    await writeFile(join(dir, 'config.yaml'), `source: { type: file, path: secrets.yaml }\noutputDir: out\nrefresh: { interval: 300ms }\nsecrets:\n  db: { id: db }\nfiles:\n  - path: t\n    template: '${template}'\nserver: { listen: "127.0.0.1:0" }\n`);
    const agent: Proc = start(node, [entry, 'run', '--config', 'config.yaml'], { cwd: dir });
    await agent.waitFor(/first render complete/, 60_000);
    const address = /"address":"([^"]+)"/.exec(agent.tail())?.[1];
    if (!address) throw new Error(`no server address in the agent's output:\n${agent.tail()}`);
    await sleep(500);
    const rssBefore = memory(agent.pid).rssMB;
    const changed = performance.now();
    await writeFile(join(dir, 'secrets.yaml'), secret('runaway', 'u2'));
    let worstHealthz = 0;
    let worstLease = 0;
    let failedAt: number | undefined;
    // The lease is sampled on its own (this process is never blocked), not after each /healthz answer.
    const lease = setInterval(() => {
      void stat(join(dir, 'out', '..lock')).then(
        (st) => (worstLease = Math.max(worstLease, Date.now() - st.mtimeMs)),
        () => undefined,
      );
    }, 100);
    const failed = agent.waitFor(/"file":"t"[^\n]*keeping its previous content/, 120_000).then(() => (failedAt = performance.now()));
    void failed.catch(() => undefined);
    while (failedAt === undefined && performance.now() - changed < 120_000) {
      const t = performance.now();
      try {
        await fetch(`http://${address}/healthz`, { signal: AbortSignal.timeout(60_000) });
      } catch {
        // Counted as the time it took.
      }
      worstHealthz = Math.max(worstHealthz, performance.now() - t);
      await sleep(50);
    }
    clearInterval(lease);
    const m = memory(agent.pid);
    const left = (await readFile(join(dir, 'out', 't'), 'utf8')) === 'u1' ? 'yes' : 'NO';
    const why = /"file":"t","msg":"file \\"t\\": ([^"]{0,60})/.exec(agent.tail())?.[1] ?? '?';
    await agent.stop();
    return [name, failedAt === undefined ? 'did not fail in 120 s' : round((failedAt - changed) / 1000, 1), m.hwmMB, round(m.hwmMB - rssBefore, 1), round(worstHealthz), round(worstLease / 1000, 1), left, why];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function config(files: number): AgentConfig {
  return {
    secrets: [{ name: 'db' }],
    files: Array.from({ length: files }, (_, i) => ({ kind: 'template', path: `f${i}`, template: `user={{ secrets.db.user }}\npass={{ secrets.db.pass | shell }}\n{% for p in secrets.db.list %}{{ p }},{% endfor %}\n{{ secrets.db | json }}`, mode: 0o440 })),
    configFile: 'bench.yaml',
    lineOf: () => 1,
  } as unknown as AgentConfig;
}

async function cost(): Promise<(string | number)[][]> {
  const cfg = config(10);
  const compiled = await compileFiles(cfg);
  const value = (v: string): SecretValue => ({ arn: 'arn', name: 'db', versionId: v, versionStages: ['AWSCURRENT'], secretString: JSON.stringify({ user: 'u', pass: `p-${v}`, list: Array.from({ length: 20 }, (_, i) => `item${i}`) }) });
  let t = performance.now();
  await renderFiles(cfg, compiled, new Map([['db', value('first')]]));
  const first = performance.now() - t;
  const warm: number[] = [];
  const inThread: number[] = [];
  for (let i = 0; i < 50; i++) {
    const values = new Map([['db', value(`v${i}`)]]);
    t = performance.now();
    await renderFiles(cfg, compiled, values);
    warm.push(performance.now() - t);
    t = performance.now();
    const context = buildContext(['db'], values);
    for (const f of compiled.files) renderTemplate(f.spec.path, undefined, f.template!, context);
    inThread.push(performance.now() - t);
  }
  return [
    ['first render (worker start + parse + render), 10 files', round(first, 1)],
    ['warm render in the worker, 10 files (median of 50)', round(median(warm), 2)],
    ['the same on the calling thread (before), 10 files (median of 50)', round(median(inThread), 2)],
  ];
}

async function idle(): Promise<(string | number)[][]> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-bench-tpl-idle-'));
  try {
    await writeFile(join(dir, 'secrets.yaml'), secret('calm', 'u1'));
    const files = Array.from({ length: 10 }, (_, i) => `  - { path: f${i}, template: "{{ secrets.db.user }} {{ secrets.db.arr | size }}" }`).join('\n');
    await writeFile(join(dir, 'config.yaml'), `source: { type: file, path: secrets.yaml }\noutputDir: out\nsecrets:\n  db: { id: db }\nfiles:\n${files}\nserver: { listen: "127.0.0.1:0" }\n`);
    const agent = start(node, [entry, 'run', '--config', 'config.yaml'], { cwd: dir });
    await agent.waitFor(/first render complete/, 60_000);
    await sleep(3_000);
    const alive = memory(agent.pid);
    await sleep(WORKER_IDLE_MS + 5_000);
    const stopped = memory(agent.pid);
    await agent.stop();
    return [
      ['worker alive (3 s after the first render)', alive.anonMB, alive.rssMB],
      [`worker stopped (${(WORKER_IDLE_MS + 8_000) / 1000} s after)`, stopped.anonMB, stopped.rssMB],
      ['added by the live worker', round(alive.anonMB - stopped.anonMB, 1), round(alive.rssMB - stopped.rssMB, 1)],
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

try {
  console.log(`agent: ${entry}${notes.length ? ` (${notes.join('; ')})` : ''}\n`);
  console.log('Runaway templates (run, file source; /healthz polled every 50 ms)');
  console.log(
    table(
      ['template', 'failed after s', 'peak RSS MB', 'RSS growth MB', 'worst /healthz ms', 'oldest lease s', 'last good kept', 'error'],
      [await runaway('(1..100000000) range', RANGE), await runaway('nested loops, 2000^3', NESTED)],
    ),
  );
  console.log('\nCost of the render worker (in this process, agent/render from source)');
  console.log(table(['render', 'ms'], await cost(), 2));
  if (!args.includes('--skip-idle')) {
    console.log('\nIdle memory (run, 10 template files)');
    console.log(table(['when', 'RssAnon MB', 'RSS MB'], await idle()));
  }
} finally {
  await stopAll();
}
process.exit(0);
