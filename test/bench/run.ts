// `npm run bench`: init latency, memory, idle cost, scale, AWS cost, start-up; side by
// side with what users would run instead. Prints Markdown tables and writes
// bench-results/latest.json (+ latest.md). Numbers come from one run on a
// possibly noisy machine: medians and ratios, never assertions.
//
//   npm run bench                      the full run (~5 min on 2 cores)
//   npm run bench -- --quick           a tiny case (BENCH_QUICK=1 too)
//   npm run bench -- --only=init,idle  some cases (init memory idle rotation scale probes startup)
//   npm run bench -- --out=path.json   write the JSON elsewhere
//   npm run bench -- --help            this list
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { startMoto, type Moto } from '../support/moto.ts';
import { buildCandidate, warmCompileCache } from './bundles.ts';
import { entrypointFlags, initContainerFlags } from '../support/dockerfile.ts';
import { costCase, type CostResult } from './cost.ts';
import { createSecrets, ensureBundle, type BenchContext, type Created } from './fixtures.ts';
import { idleCase, type IdleResult } from './idle.ts';
import { initCase, type InitResult } from './init.ts';
import { REPO, round, stopAll, table, type Cell } from './lib.ts';
import { memoryCase, type MemoryResult } from './memory.ts';
import { probesCase, type ProbesResult } from './probes.ts';
import { rotationCase, type RotationResult } from './rotation.ts';
import { scaleCase, type ScaleResult } from './scale.ts';
import { startupCase, type StartupResult } from './startup.ts';
import { validateCase, type ValidateResult } from './validate.ts';

const CASES = ['init', 'memory', 'idle', 'rotation', 'scale', 'probes', 'startup', 'validate', 'cost'] as const;
type CaseName = (typeof CASES)[number];

export interface Failed {
  error: string;
}

export interface BenchResults {
  meta: {
    date: string;
    command: string;
    quick: boolean;
    node: string;
    machine: { nproc: number; cpu: string; ramGB: number; loadavg: number[]; loadavgAtStart: number[] };
    durationS: number;
    notes: string[];
  };
  init: InitResult | Failed | null;
  memory: MemoryResult | Failed | null;
  idle: IdleResult | Failed | null;
  scale: ScaleResult | Failed | null;
  rotation: RotationResult | Failed | null;
  cost: CostResult | null;
  validate: ValidateResult | Failed | null;
  probes: ProbesResult | Failed | null;
  startup: StartupResult | Failed | null;
}

/** Undo what a run started (moto, temp dir) when it is interrupted. */
const cleanups = new Set<() => Promise<void>>();

const ok = <T extends object>(r: T | Failed | null): T | undefined => (r && !('error' in r) ? r : undefined);

async function machine(loadavgAtStart: number[]): Promise<BenchResults['meta']['machine']> {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(await readFile('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) cpu = m[1].trim();
  } catch {
    // not Linux
  }
  return { nproc: availableParallelism(), cpu, ramGB: round(totalmem() / 2 ** 30, 1), loadavg: loadavg().map((l) => round(l, 2)), loadavgAtStart };
}

const USAGE = `usage: npm run bench [-- --quick] [-- --only=CASE,...] [-- --out=path.json]
  --quick        a tiny case (BENCH_QUICK=1 too): the run must not rot, the numbers mean nothing
  --only=CASES   some cases: ${CASES.join(' ')} (AWS cost follows from scale and rotation; alone: its arithmetic, batched checks included)
  --out=PATH     write the JSON (and the .md beside it) there; default bench-results/latest.json
  BENCH_FLAGS="--a --b;--c"  more V8 flag sets to try on the bundle; BENCH_BUNDLE=path  another bundle`;

function parseArgs(argv: readonly string[]): { quick: boolean; only: Set<CaseName>; out: string } {
  const unknown = argv.filter((a) => a !== '--quick' && !a.startsWith('--only=') && !a.startsWith('--out='));
  if (unknown.length > 0) throw new Error(`unknown argument ${unknown.join(' ')}\n${USAGE}`);
  const quick = argv.includes('--quick') || process.env.BENCH_QUICK === '1';
  const onlyArg = argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const only = new Set<CaseName>();
  for (const c of onlyArg ? onlyArg.split(',') : CASES) {
    if (!(CASES as readonly string[]).includes(c)) throw new Error(`unknown case "${c}" (one of ${CASES.join(', ')})`);
    only.add(c as CaseName);
  }
  const out = argv.find((a) => a.startsWith('--out='))?.slice('--out='.length) ?? join(REPO, 'bench-results/latest.json');
  return { quick, only, out };
}

async function attempt<T>(name: string, wanted: boolean, fn: () => Promise<T>): Promise<T | Failed | null> {
  if (!wanted) return null;
  const t0 = Date.now();
  process.stderr.write(`bench: ${name}…\n`);
  try {
    const r = await fn();
    process.stderr.write(`bench: ${name} done in ${round((Date.now() - t0) / 1000, 1)} s\n`);
    return r;
  } catch (err) {
    process.stderr.write(`bench: ${name} FAILED: ${(err as Error).stack ?? String(err)}\n`);
    return { error: (err as Error).message.slice(0, 2000) };
  }
}

export async function bench(argv: readonly string[]): Promise<BenchResults> {
  const { quick, only, out } = parseArgs(argv);
  const t0 = Date.now();
  const loadAtStart = loadavg().map((l) => round(l, 2));
  const notes: string[] = [];
  const root = await mkdtemp(join(tmpdir(), 'secrets-agent-bench-'));
  let moto: Moto | undefined;
  const cleanup = async (): Promise<void> => {
    await stopAll();
    await moto?.stop();
    await rm(root, { recursive: true, force: true });
  };
  cleanups.add(cleanup);
  try {
    const bundle = await ensureBundle(notes);
    const candidate = await buildCandidate(root);
    const kB = async (path: string): Promise<number> => round((await stat(path)).size / 1024);
    notes.push(`sizes: ${bundle ? `dist/secrets-agent.mjs ${await kB(bundle)} kB, ` : ''}candidate bundle ${await kB(candidate)} kB`);
    const imageFlags = await entrypointFlags();
    const initFlags = await initContainerFlags();
    const compileCache = new Map<string, string>();
    for (const entry of [bundle, candidate]) {
      if (entry) compileCache.set(entry, await warmCompileCache(entry, join(root, `compile-cache-${compileCache.size}`), [[], imageFlags, initFlags]));
    }
    moto = await startMoto();
    const tokenFile = join(root, 'token');
    await writeFile(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.bench-projected-service-account-token.sig');
    let many: Promise<Created[]> | undefined;
    const m = moto;
    const ctx: BenchContext = {
      quick,
      moto,
      root,
      tokenFile,
      bundle,
      candidate,
      compileCache,
      imageFlags,
      initFlags,
      notes,
      many: () => (many ??= createSecrets(m, Array.from({ length: quick ? 5 : 1000 }, (_, i) => `bench/many/s${String(i).padStart(4, '0')}`))),
    };
    if (!bundle) notes.push('"bundle" rows use the candidate bundle built by the bench (test/bench/bundles.ts)');

    // Full run: init first and alone (its timings are the most sensitive to
    // load); idle and rotation mostly wait, so they run together, and moto
    // creates the 1,000 secrets once the rotations are done; then memory; then scale.
    // Quick: everything at once (the numbers mean nothing; the run must not rot).
    const run = {
      init: () => attempt('init latency', only.has('init'), () => initCase(ctx)),
      idle: () => attempt('idle cost', only.has('idle'), () => idleCase(ctx)),
      rotation: () => attempt('rotation propagation', only.has('rotation'), () => rotationCase(ctx)),
      memory: () => attempt('memory', only.has('memory'), () => memoryCase(ctx)),
      scale: () => attempt('scale', only.has('scale'), () => scaleCase(ctx)),
      probes: () => attempt('probes', only.has('probes'), () => probesCase(ctx)),
      startup: () => attempt('start-up', only.has('startup'), () => startupCase(ctx)),
      validate: () => attempt('validate at scale', only.has('validate'), () => validateCase(quick ? [10, 100] : undefined)),
    };
    let init, idle, rotation, memory, scale, probes, startup;
    if (quick) {
      [init, idle, rotation, memory, scale, probes, startup] = await Promise.all([run.init(), run.idle(), run.rotation(), run.memory(), run.scale(), run.probes(), run.startup()]);
    } else {
      init = await run.init();
      probes = await run.probes();
      startup = await run.startup();
      const rotationThenCreate = async () => {
        const r = await run.rotation();
        // Not during the rotations: moto creating secrets would slow the agent's calls.
        if (only.has('memory') || only.has('scale')) await ctx.many().catch(() => undefined);
        return r;
      };
      [idle, rotation] = await Promise.all([run.idle(), rotationThenCreate()]);
      memory = await run.memory();
      scale = await run.scale();
    }
    const validate = await run.validate();
    const cost = ok(scale) || ok(rotation) || only.has('cost') ? costCase(ok(init), ok(scale), ok(rotation)) : null;

    const results: BenchResults = {
      meta: {
        date: new Date().toISOString(),
        command: `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
        quick,
        node: process.version,
        machine: await machine(loadAtStart),
        durationS: round((Date.now() - t0) / 1000, 1),
        notes,
      },
      init,
      memory,
      idle,
      scale,
      rotation,
      cost,
      probes: probes ?? null,
      startup: startup ?? null,
      validate: validate ?? null,
    };
    const md = markdown(results);
    process.stdout.write(md + '\n');
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, JSON.stringify(results, null, 2) + '\n');
    await writeFile(join(dirname(out), basename(out, '.json') + '.md'), md + '\n');
    process.stderr.write(`bench: wrote ${out} in ${results.meta.durationS} s\n`);
    return results;
  } finally {
    cleanups.delete(cleanup);
    await cleanup();
  }
}

// --- Markdown -------------------------------------------------------------------------

const calls = (c: Record<string, number> | undefined): string =>
  Object.entries(c ?? {})
    .sort()
    .map(([op, n]) => `${op} ${n}`)
    .join(', ') || '–';

function section(title: string, r: object | null, body: (r: never) => string[]): string[] {
  if (r === null) return [];
  if ('error' in r) return [`### ${title}`, '', `FAILED: ${(r as Failed).error.split('\n')[0]}`, ''];
  return [`### ${title}`, '', ...body(r as never), ''];
}

/** "the agent (every variant): …; minimal SDK script: …" — variants with the same calls grouped. */
function podStart(byVariant: Record<string, Record<string, number>>): string {
  const groups = new Map<string, string[]>();
  for (const [name, c] of Object.entries(byVariant)) {
    const key = calls(c);
    groups.set(key, [...(groups.get(key) ?? []), name.replace(/^secrets-agent init: .*/, 'secrets-agent init')]);
  }
  return [...groups].map(([c, names]) => `${[...new Set(names)].join(', ')}: ${c}`).join('; ');
}

const pct = (a: number, b: number): number => round(a / b, 2);

/** The issue's goals against this run's numbers. */
function goals(r: BenchResults): string[] {
  const rows: Cell[][] = [];
  const init = ok(r.init);
  if (init) {
    const row = (re: RegExp) => init.rows.find((x) => re.test(x.name));
    const bundle = init.rows.find((x) => x.name.endsWith(`: ${init.base}`));
    const minimal = row(/^minimal SDK script$/);
    const cli = row(/^aws-cli loop$/);
    const best = init.rows.find((x) => x.name.endsWith(`: ${init.recommended}`));
    if (bundle && minimal) rows.push([`init: ${init.base} no slower than the minimal SDK script`, `${pct(bundle.medianMs, minimal.medianMs)}x the minimal script`, bundle.medianMs <= minimal.medianMs ? 'yes' : 'no']);
    // Issue 16: init at <= 0.8x the minimal SDK script, as the example init container runs it.
    if (best && minimal) {
      rows.push([
        `init: <= 0.8x the minimal SDK script, as the example init container runs it (${best.name.replace(/^secrets-agent init: /, '')})`,
        `${pct(best.medianMs, minimal.medianMs)}x the minimal script (${best.medianMs} vs ${minimal.medianMs} ms)`,
        best.medianMs <= 0.8 * minimal.medianMs ? 'yes' : 'no',
      ]);
    }
    if (bundle && cli) rows.push(['init: >= 10x faster than the aws-cli loop', `${pct(cli.medianMs, bundle.medianMs)}x faster`, cli.medianMs >= 10 * bundle.medianMs ? 'yes' : 'no']);
  }
  const mem = ok(r.memory);
  if (mem) {
    // Private memory (RssAnon) as the image runs it: what each pod adds to a
    // node; the node binary's file pages are shared by every container of the image.
    for (const v of mem.rows.filter((x) => x.label === mem.recommended || x.label === `${mem.recommended}, over HTTPS`)) {
      const goal = v.secrets >= 1000 ? 30 : 20;
      rows.push([
        `run: private memory (RssAnon) <= ${goal} MB, ${v.secrets} secrets, ${v.cycles} cycles (${v.label})`,
        `${v.anonMB} MB = ${pct(v.anonMB, goal)}x the goal (PSS ${v.pssMB} MB, RSS ${v.rssMB} MB; node with only the built-ins an agent needs: RssAnon ${mem.builtinsFloor.anonMB} MB)`,
        v.anonMB <= goal ? 'yes' : 'no',
      ]);
    }
  }
  const idle = ok(r.idle);
  if (idle) {
    const goal = 3.6;
    rows.push([
      `idle: <= 1 mCPU (${goal} CPU s/hour) at the defaults, ${idle.secrets} secrets (${idle.recommended})`,
      `${idle.cpuSPerHourImageWithChecks} CPU s/hour = ${pct(idle.cpuSPerHourImageWithChecks, goal)}x the goal (${idle.cpuSPerHourImage} idle + ${idle.checksPerHour} checks at ${idle.cpuMsPerCheckImage} ms)`,
      idle.cpuSPerHourImageWithChecks <= goal ? 'yes' : 'no',
    ]);
  }
  const scale = ok(r.scale);
  // The growth rows: the bare bundle with the default check (DescribeSecret), 10 -> 1,000.
  const growthRows = scale?.rows.filter((row) => row.checks === 'DescribeSecret' && row.variant === scale.label) ?? [];
  const first = growthRows[0];
  const last = growthRows.at(-1);
  if (first && last && last !== first) {
    const growth = pct(last.cpuMsPerCheck, first.cpuMsPerCheck);
    rows.push([`scale: nothing quadratic, ${first.secrets} -> ${last.secrets} secrets and files`, `CPU per check x${growth}, first-render CPU per secret x${pct(last.firstRenderCpuMsPerSecret, first.firstRenderCpuMsPerSecret)}`, growth <= 2 ? 'yes' : 'no']);
  }
  // Issue 16: with 1,000 secrets and files, first render <= 2 s and one check round <= 100 ms of CPU.
  if (last && last.secrets >= 1000) {
    rows.push([`scale: first render <= 2 s, ${last.secrets} secrets and ${last.files} files`, `${round(last.firstRenderMs / 1000, 2)} s = ${pct(last.firstRenderMs, 2000)}x the goal`, last.firstRenderMs <= 2000 ? 'yes' : 'no']);
  }
  for (const row of scale?.rows.filter((x) => x.secrets >= 1000) ?? []) {
    const how = row.checks === 'ListSecrets' ? 'refresh.batchChecks: ListSecrets of their path, 100 a call' : 'the default check: DescribeSecret per secret';
    rows.push([`scale: one check round <= 100 ms of CPU, ${row.secrets} secrets (${how}; ${row.variant})`, `${row.cycleCpuMs} ms = ${pct(row.cycleCpuMs, 100)}x the goal`, row.cycleCpuMs <= 100 ? 'yes' : 'no']);
  }
  const val = ok(r.validate);
  if (val && val.rows.length >= 2) {
    const [a, b] = [val.rows[val.rows.length - 2]!, val.rows.at(-1)!];
    rows.push([
      `validate: linear, ${val.rows.map((x) => x.files).join(' -> ')} files (ms per file does not grow)`,
      val.rows.map((x) => `${x.files}: ${x.seconds} s, ${x.peakMB} MB`).join('; ') + `; ms per file x${pct(b.msPerFile, a.msPerFile)} from ${a.files} to ${b.files}`,
      b.msPerFile <= a.msPerFile * 1.5 ? 'yes' : 'no',
    ]);
  }
  const rot = ok(r.rotation);
  for (const x of rot?.rows ?? []) rows.push([`GetSecretValue per rotation = 1 (${x.mode})`, String(x.getSecretValuePerRotation), x.getSecretValuePerRotation === 1 ? 'yes' : 'no']);
  for (const x of (rot?.rows ?? []).filter((y) => y.interval === '1h')) {
    rows.push([`rotation reaches its file <= 10 s at a 1 h base interval (${x.mode})`, `p50 ${round(x.fileP50Ms / 1000, 2)} s, p99 ${round(x.fileP99Ms / 1000, 2)} s`, x.fileP99Ms <= 10_000 && x.completed === x.rotations ? 'yes' : 'no']);
  }
  // Issue 16: with batched checks, <= 30 API calls per secret per day at the defaults for a pod of 10 secrets.
  const batch = r.cost?.batching.find((x) => x.secretsPerPod === 10 && x.schedule === 'rounds');
  if (batch) {
    rows.push([
      `fleet cost: <= 30 check calls per secret per day at the defaults, 10 secrets, batched checks (SSM, or refresh.batchChecks)`,
      `${batch.withPerSecretPerDay} = ${pct(batch.withPerSecretPerDay, 30)}x the goal (without batching: ${batch.withoutPerSecretPerDay})`,
      batch.withPerSecretPerDay <= 30 ? 'yes' : 'no',
    ]);
  }
  return rows.length > 0 ? ['### Goals', '', table(['goal', 'measured', 'met'], rows), ''] : [];
}

export function markdown(r: BenchResults): string {
  const m = r.meta;
  const lines: string[] = [
    `Machine: ${m.machine.nproc} CPUs (${m.machine.cpu}), ${m.machine.ramGB} GB RAM, load average ${m.machine.loadavgAtStart.join(' ')} at the start, ${m.machine.loadavg.join(' ')} at the end (other work shares the machine); Node ${m.node}; ${m.date.slice(0, 16).replace('T', ' ')} UTC; ${m.durationS} s.`,
    `Command: \`${m.command}\`${m.quick ? ' (QUICK: tiny sizes, numbers meaningless)' : ''}`,
    ...m.notes.map((n) => `- ${n}`),
    '',
    ...goals(r),
  ];
  lines.push(
    ...section('1. Init latency', r.init, (x: InitResult) => [
      `\`init\` with ${x.secrets} secrets against moto on loopback, web identity (STS) included; ${x.rounds > 0 ? `median of ${x.rounds} alternating runs, after one warm-up` : "one run"}.`,
      '',
      table(
        ['variant', 'median ms', 'min', 'max', `x ${x.base}`, 'API calls per run'],
        x.rows.map((row): Cell[] => [row.name, row.medianMs, row.minMs, row.maxMs, row.vsBundle, calls(row.apiCalls)]),
        2,
      ),
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('2. Memory', r.memory, (x: MemoryResult) => [
      `\`run\` after the given check cycles (every secret checked once per cycle; 10 secrets at a ${x.intervalMs} ms interval with a rotation every 250 ms, 1,000 secrets at 1 s). RssAnon = private (heaps, stacks); RSS = RssAnon + file-backed (mostly the node binary's own pages, shared by the containers of one image on a node); PSS = private + each shared page divided by its sharers.`,
      `An empty \`node\` process: RSS ${x.emptyNode.rssMB} MB (RssAnon ${x.emptyNode.anonMB}, file ${x.emptyNode.fileMB}). Node with the image's flags and only the built-ins such an agent cannot do without (HTTP server for /metrics, HTTPS client, crypto, child_process, fs/promises, perf_hooks, worker_threads, stream), no agent code: RSS ${x.builtinsFloor.rssMB} MB (RssAnon ${x.builtinsFloor.anonMB}, file ${x.builtinsFloor.fileMB}).`,
      '',
      table(
        ['variant', 'secrets', 'cycles', 'RssAnon MB', 'PSS MB', 'RSS MB', 'peak MB', 'file MB', 'heap MB', 'RssAnon at 1/10', 'CPU ms/cycle'],
        x.rows.map((row): Cell[] => [row.label, row.secrets, row.cycles, row.anonMB, row.pssMB, row.rssMB, row.hwmMB, row.fileMB, row.heapUsedMB, row.anonAtTenthMB, row.cpuMsPerCycle]),
        2,
      ),
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('3. Idle cost', r.idle, (x: IdleResult) => [
      `\`run\` with ${x.secrets} secrets, CPU (user + system) over the window, scaled to an hour.`,
      '',
      table(
        ['variant', 'interval', 'window s', 'CPU s', 'CPU s/hour', 'wakeups/s', 'API calls in window', 'RSS MB'],
        x.rows.map((row): Cell[] => [row.label, row.interval, row.windowS, row.cpuS, row.cpuSPerHour, row.wakeupsPerS, calls(row.apiCalls), row.rssMB]),
        2,
      ),
      `- CPU per check (1 s row minus the idle floor): ${x.cpuMsPerCheck} ms for the bare bundle, ${x.cpuMsPerCheckImage} ms as the image runs it; default settings with their ${x.checksPerHour} checks/hour: ${x.cpuSPerHourDefaultWithChecks} and ${x.cpuSPerHourImageWithChecks} CPU s/hour (goal: 3.6, 1 mCPU).`,
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('4. Scale', r.scale, (x: ScaleResult) => [
      'One file per secret (every other one a template).',
      '',
      table(
        ['variant', 'checks', 'secrets', 'first render ms', 'per secret', 'its CPU ms', 'per secret', 'first render calls', 'check cycle ms', 'cycle CPU ms', 'cycle CPU ms, each', 'CPU ms/check', 'cycle calls', 'RSS MB', 'peak MB'],
        x.rows.map((row): Cell[] => [
          row.variant,
          row.checks,
          row.secrets,
          row.firstRenderMs,
          row.firstRenderMsPerSecret,
          row.firstRenderCpuMs,
          row.firstRenderCpuMsPerSecret,
          calls(row.firstRenderCalls),
          row.cycleMs,
          row.cycleCpuMs,
          row.cycleCpuMsAll.join(' / '),
          row.cpuMsPerCheck,
          calls(row.cycleCalls),
          row.rssMB,
          row.hwmMB,
        ]),
        3,
      ),
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('5. Rotation propagation', r.rotation, (x: RotationResult) => [
      'PutSecretValue answered -> file has the new bytes -> app notified (HTTP POST); rotations 1.25 s apart.',
      '',
      table(
        ['mode', 'rotations', 'done', 'file p50 ms', 'file p99 ms', 'notify p50 ms', 'notify p99 ms', 'max ms', 'GetSecretValue/rotation', 'DescribeSecret calls', 'notifications'],
        x.rows.map((row): Cell[] => [
          row.mode,
          row.rotations,
          row.completed,
          row.fileP50Ms,
          row.fileP99Ms,
          row.notifyP50Ms,
          row.notifyP99Ms,
          row.notifyMaxMs,
          row.getSecretValuePerRotation,
          row.describeCalls,
          row.notifications,
        ]),
        2,
      ),
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('6. AWS cost', r.cost, (x: CostResult) => [
      `Measured calls per check of an unchanged secret: ${calls(x.callsPerCheck)}.`,
      '',
      table(
        ['strategy', 'rotation lag p99 s', 'calls/secret/day', 'calls', '$/month per 1,000 pods'],
        x.rows.map((row): Cell[] => [row.strategy, row.rotationLagP99S, row.callsPerSecretPerDay, row.calls, row.dollarsPerMonth]),
        2,
      ),
      '',
      `Calls per pod start (init): ${podStart(x.podStart)}.`,
      '',
      'Batched checks (`refresh.batchChecks`, SSM), check calls per secret per day at the defaults:',
      '',
      table(
        ['secrets per pod', 'jitter', 'schedule', 'without (DescribeSecret)', 'with (ListSecrets / DescribeSecret)', 'checks per round', '$/month without', '$/month with'],
        x.batching.map((b): Cell[] => [b.secretsPerPod, b.jitter, b.schedule, b.withoutPerSecretPerDay, b.withPerSecretPerDay, b.meanGroup, b.dollarsPerMonthWithout, b.dollarsPerMonthWith]),
        2,
      ),
      '',
      ...x.notes.map((n) => `- ${n}`),
    ]),
    ...section('7. Probes (why the image runs as it does)', r.probes, (x: ProbesResult) => [
      `Medians of ${x.runs} fresh \`node\` processes each.`,
      '',
      table(
        ['probe', 'result'],
        [
          ...x.builtins.map((b): Cell[] => [`load http, https, crypto, stream, fs/promises, child_process; node flags: ${b.flags}`, `${b.medianMs} ms`]),
          ['RSS of an idle node with the image flags, without / with one Intl.DateTimeFormat', `${x.intl.withoutMB} / ${x.intl.withMB} MB (+${x.intl.deltaMB} MB, +${x.intl.fileDeltaMB} MB of it file-backed ICU data)`],
          ['loadConfig, 10 secrets, init container flags: first call / second call (a reload)', `${x.configLoad.firstMs} / ${x.configLoad.reloadMs} ms`],
        ],
      ),
    ]),
    ...section('8. Start-up (no network)', r.startup, (x: StartupResult) => [
      `\`version\`, and \`init\` with ${x.secrets} secrets on the file source (a dotenv template each); wall time from spawn to exit, median of ${x.runs} round-robin runs after one warm-up.`,
      '',
      table(
        ['variant', 'median ms', 'min', 'max', 'command'],
        x.rows.map((row): Cell[] => [row.label, row.medianMs, row.minMs, row.maxMs, row.command]),
        1,
      ),
    ]),
    ...section('9. validate at scale', r.validate, (x: ValidateResult) => [
      '`validate` of configs with that many files (every other one a template; 1,000 secrets shared), the real CLI from source; wall time and peak RSS (/usr/bin/time).',
      '',
      table(['files', 'exit', 'seconds', 'peak RSS MB', 'ms per file'], x.rows.map((row): Cell[] => [row.files, row.exit ?? '', row.seconds, row.peakMB, row.msPerFile]), 3),
    ]),
  );
  return lines.join('\n');
}

const failed = (r: BenchResults): string[] =>
  (['init', 'memory', 'idle', 'scale', 'rotation', 'probes', 'startup', 'validate'] as const).filter((k) => {
    const v = r[k];
    return v !== null && 'error' in v;
  });

if (import.meta.main && (process.argv.includes('--help') || process.argv.includes('-h'))) {
  process.stdout.write(USAGE + '\n');
} else if (import.meta.main) {
  const interrupted = (): void => void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(130));
  process.on('SIGINT', interrupted);
  process.on('SIGTERM', interrupted);
  bench(process.argv.slice(2)).then(
    (r) => {
      const bad = failed(r);
      if (bad.length > 0) process.stderr.write(`bench: failed cases: ${bad.join(', ')}\n`);
      process.exit(bad.length > 0 ? 1 : 0);
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
